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
        Description = "compute precision: f32 or f64",
        DefaultValueFactory = _ => "f32",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "cpu, cuda or auto (auto picks the CPU in this build)",
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

    public static bool IsF64(string dtype) => dtype switch
    {
        "f32" or "float32" => false,
        "f64" or "float64" => true,
        _ => throw new InputException($"--dtype: unknown precision '{dtype}'; expected f32 or f64"),
    };

    public static IBackend<F> Backend<F>(string device) where F : unmanaged, IFloatingPointIeee754<F> => device switch
    {
        "cpu" or "auto" => CpuBackend<F>.Instance,
        "cuda" => throw new InputException("--device cuda: this build has no CUDA backend yet; use --device cpu"),
        _ => throw new InputException($"--device: unknown device '{device}'; expected cpu, cuda or auto"),
    };

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
    public Option<string> Arch { get; } = new("--arch") { Description = "architecture (gpt2)", DefaultValueFactory = _ => "gpt2" };
    public Option<int> Layers { get; } = new("--layers") { Description = "number of layers L", DefaultValueFactory = _ => 2 };
    public Option<int> Heads { get; } = new("--heads") { Description = "attention heads H", DefaultValueFactory = _ => 4 };
    public Option<int> Dim { get; } = new("--dim") { Description = "model width d", DefaultValueFactory = _ => 64 };
    public Option<int?> Vocab { get; } = new("--vocab") { Description = "vocabulary size V (train: defaults to the data's)" };
    public Option<int> Ctx { get; } = new("--ctx") { Description = "context length (n_positions)", DefaultValueFactory = _ => 64 };
    public Option<int?> Ffn { get; } = new("--ffn") { Description = "MLP width (default 4·d)" };
    public Option<double> Eps { get; } = new("--eps") { Description = "LayerNorm epsilon", DefaultValueFactory = _ => 1e-5 };
    public Option<bool> Untied { get; } = new("--untied") { Description = "separate lm_head.weight instead of tying it to wte" };
    public Option<int> Seed { get; } = new("--seed") { Description = "random seed", DefaultValueFactory = _ => 1337 };

    public void AddTo(Command c)
    {
        foreach (Option o in new Option[] { Arch, Layers, Heads, Dim, Vocab, Ctx, Ffn, Eps, Untied, Seed }) c.Options.Add(o);
    }

    public Gpt2Config Config(ParseResult r, int? vocabFallback)
    {
        string arch = r.GetValue(Arch)!;
        if (arch == "bert") throw new InputException("--arch bert: BERT is not in this build yet; use --arch gpt2");
        if (arch != "gpt2") throw new InputException($"--arch: unknown architecture '{arch}'; expected gpt2");
        int vocab = r.GetValue(Vocab) ?? vocabFallback ?? throw new InputException("--vocab: required");
        var cfg = new Gpt2Config(vocab, r.GetValue(Ctx), r.GetValue(Dim), r.GetValue(Layers), r.GetValue(Heads),
            r.GetValue(Eps), r.GetValue(Ffn), !r.GetValue(Untied));
        cfg.Validate("model flags");
        return cfg;
    }
}
