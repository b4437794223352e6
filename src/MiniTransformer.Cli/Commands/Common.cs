using System.CommandLine;
using System.Globalization;
using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;

namespace MiniTransformer.Cli.Commands;

/// <summary>Options and helpers shared by several commands.</summary>
static class Common
{
    public static Option<string> Dtype() => new("--dtype")
    {
        Description = "compute precision: f32 or f64; bf16 (mt train, mt forward): bf16 storage on the CUDA backend, float32 arithmetic",
        DefaultValueFactory = _ => "f32",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "cpu, cuda or auto (auto: cuda when a GPU is usable and the precision is f32 or bf16, else cpu)",
        DefaultValueFactory = _ => "auto",
    };

    public static Option<int?> Threads() => new("--threads") { Description = "CPU threads (default: all cores)" };

    public static void ApplyThreads(int? threads)
    {
        if (threads is null) return;
        if (threads < 1) throw new InputException($"--threads: must be at least 1 (got {threads})");
        Parallelism.Threads = threads.Value;
        Gemm.MaxThreads = threads.Value;
    }

    /// <summary>Whether --dtype asks for float64; bf16 (float32 on the host, bf16 storage on CUDA) only where <paramref name="allowBf16"/>.</summary>
    public static bool IsF64(string dtype, bool allowBf16 = false) => dtype switch
    {
        "f32" or "float32" => false,
        "f64" or "float64" => true,
        "bf16" or "bfloat16" when allowBf16 => false,
        _ => throw new InputException($"--dtype: unknown precision '{dtype}'; expected f32 or f64{(allowBf16 ? " (or bf16 with --device cuda)" : "")}"),
    };

    /// <summary>
    /// The backend for --device and --dtype: cpu; cuda (float32 or bf16 storage; one clear line without a GPU); auto,
    /// which is cuda when a GPU is usable and the precision is f32 or bf16, else cpu. bf16 without CUDA is refused.
    /// </summary>
    public static IBackend<F> Backend<F>(string device, string dtype = "f32") where F : unmanaged, IFloatingPointIeee754<F>
    {
        bool bf16 = dtype is "bf16" or "bfloat16";
        bool gpu = typeof(F) == typeof(float) && Backends.Cuda.CudaDevice.Unavailable() is null;
        if (bf16 && device is "cpu" or "auto" && !(device == "auto" && gpu))
            throw new InputException($"--dtype bf16: bf16 storage is a CUDA backend option ({(device == "cpu" ? "the CPU computes in f32 or f64" : "--device auto found no usable GPU")}); use --device cuda, or --dtype f32");
        if (device == "auto") device = gpu ? "cuda" : "cpu";
        return device switch
        {
            "cpu" => CpuBackend<F>.Instance,
            "cuda" when typeof(F) == typeof(float) =>
                (IBackend<F>)(object)new Backends.Cuda.CudaBackend(storage: bf16 ? Tensors.DType.BF16 : Tensors.DType.F32),
            "cuda" => throw new InputException("--device cuda: the CUDA backend computes in float32; use --dtype f32 or bf16"),
            _ => throw new InputException($"--device: unknown device '{device}'; expected cpu, cuda or auto"),
        };
    }

    public static string Fmt(double v, string f = "F4") => v.ToString(f, CultureInfo.InvariantCulture);

    public static string HumanCount(long n) => n switch
    {
        >= 1_000_000 => Fmt(n / 1e6, "F2") + "M",
        >= 1_000 => Fmt(n / 1e3, "F1") + "k",
        _ => n.ToString(CultureInfo.InvariantCulture),
    };
}

/// <summary>The model-shape flags of <c>mt init</c>, reused by <c>mt train</c> when it starts from scratch.</summary>
sealed class InitOptions
{
    public Option<string> Arch { get; } = new("--arch") { Description = "architecture: gpt2 or bert", DefaultValueFactory = _ => "gpt2" };
    public Option<int> Layers { get; } = new("--layers") { Description = "number of layers L", DefaultValueFactory = _ => 2 };
    public Option<int> Heads { get; } = new("--heads") { Description = "attention heads H", DefaultValueFactory = _ => 4 };
    public Option<int> Dim { get; } = new("--dim") { Description = "model width d", DefaultValueFactory = _ => 64 };
    public Option<int?> Vocab { get; } = new("--vocab") { Description = "vocabulary size V (train: defaults to the data's)" };
    public Option<int> Ctx { get; } = new("--ctx") { Description = "context length (n_positions / max_position_embeddings)", DefaultValueFactory = _ => 64 };
    public Option<int?> Ffn { get; } = new("--ffn") { Description = "MLP width (default 4·d)" };
    public Option<double?> Eps { get; } = new("--eps") { Description = "LayerNorm epsilon (default 1e-5 for gpt2, 1e-12 for bert)" };
    public Option<bool> Untied { get; } = new("--untied") { Description = "separate output map (gpt2 lm_head.weight, bert cls.predictions.decoder.weight) instead of the word embeddings" };
    public Option<int?> TypeVocab { get; } = new("--type-vocab") { Description = "bert: token types (type_vocab_size, default 2)" };
    public Option<bool> Pooler { get; } = new("--pooler") { Description = "bert: add the pooler (dense + tanh on the first token)" };
    public Option<bool> EncoderOnly { get; } = new("--encoder-only") { Description = "bert: no MLM head (a BertModel: outputs are the hidden states, and the pooler output with --pooler); mt init only" };
    public Option<int> Seed { get; } = new("--seed") { Description = "random seed", DefaultValueFactory = _ => 1337 };

    public void AddTo(Command c)
    {
        foreach (Option o in new Option[] { Arch, Layers, Heads, Dim, Vocab, Ctx, Ffn, Eps, Untied, TypeVocab, Pooler, EncoderOnly, Seed }) c.Options.Add(o);
    }

    /// <summary>"gpt2" or "bert"; anything else is a flag error.</summary>
    public string ArchOf(ParseResult r)
    {
        string arch = r.GetValue(Arch)!;
        if (arch is not ("gpt2" or "bert")) throw new InputException($"--arch: unknown architecture '{arch}'; expected gpt2 or bert");
        if (arch == "gpt2" && r.GetValue(TypeVocab) is not null) throw new InputException("--type-vocab: only BERT has token types (use --arch bert)");
        if (arch == "gpt2" && r.GetValue(Pooler)) throw new InputException("--pooler: only BERT has a pooler (use --arch bert)");
        if (arch == "gpt2" && r.GetValue(EncoderOnly)) throw new InputException("--encoder-only: only BERT comes encoder-only (use --arch bert)");
        return arch;
    }

    public Gpt2Config Config(ParseResult r, int? vocabFallback)
    {
        if (ArchOf(r) != "gpt2") throw new InvalidOperationException("not a GPT-2");
        int vocab = r.GetValue(Vocab) ?? vocabFallback ?? throw new InputException("--vocab: required");
        var cfg = new Gpt2Config(vocab, r.GetValue(Ctx), r.GetValue(Dim), r.GetValue(Layers), r.GetValue(Heads),
            r.GetValue(Eps) ?? 1e-5, r.GetValue(Ffn), !r.GetValue(Untied));
        cfg.Validate("model flags");
        return cfg;
    }

    public BertConfig BertConfig(ParseResult r, int? vocabFallback)
    {
        if (ArchOf(r) != "bert") throw new InvalidOperationException("not a BERT");
        int vocab = r.GetValue(Vocab) ?? vocabFallback ?? throw new InputException("--vocab: required");
        int dim = r.GetValue(Dim);
        var cfg = new BertConfig(vocab, r.GetValue(Ctx), dim, r.GetValue(Layers), r.GetValue(Heads), r.GetValue(Ffn) ?? 4 * dim,
            r.GetValue(TypeVocab) ?? 2, r.GetValue(Eps) ?? 1e-12, "gelu", r.GetValue(Pooler), !r.GetValue(Untied), MlmHead: !r.GetValue(EncoderOnly));
        cfg.Validate("model flags");
        return cfg;
    }

    /// <summary>A randomly initialised model of the flags' architecture.</summary>
    public ILanguageModel<F> NewModel<F>(ParseResult r, int? vocabFallback, IBackend<F> ops, int seed) where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (ArchOf(r) == "bert")
        {
            var bert = new Bert<F>(BertConfig(r, vocabFallback), ops);
            bert.InitializeRandom(seed);
            return bert;
        }
        var gpt2 = new Gpt2<F>(Config(r, vocabFallback), ops);
        gpt2.InitializeRandom(seed);
        return gpt2;
    }

    public static long ParameterCount<F>(ILanguageModel<F> m) where F : unmanaged, IFloatingPointIeee754<F> =>
        m.Parameters.Sum(p => (long)p.Value.Length);
}
