using System.Numerics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using MiniTransformer.Backends;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.IO;

/// <summary>
/// Loads and saves models in the Hugging Face layout: a directory with <c>config.json</c> + <c>model.safetensors</c>
/// (a bare <c>.safetensors</c> file whose <c>__metadata__</c> holds <c>config</c> also loads), or an llm.c
/// <c>gpt2_*.bin</c> checkpoint.
/// </summary>
public static partial class ModelFiles
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";

    /// <summary>Tensors real checkpoints carry that the engine does not use; skipped on load.</summary>
    [GeneratedRegex(@"^h\.\d+\.attn\.(bias|masked_bias)$")]
    private static partial Regex Gpt2Buffers();

    public static Gpt2<F> LoadGpt2<F>(string path, IBackend<F> ops) where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) && File.Exists(path))
        {
            var ck = LlmcCheckpoint.Read(path);
            var cfg = new Gpt2Config(ck.VocabSize, ck.MaxSeqLen, ck.Channels, ck.NumLayers, ck.NumHeads);
            cfg.Validate(path);
            return Build(cfg, ck.Tensors, path, ops);
        }
        var (config, weights) = Locate(path);
        var file = SafeTensors.Read(weights);
        return Build(config, file.Tensors, weights, ops);
    }

    /// <summary>Resolves a model path to (config, weights file).</summary>
    static (Gpt2Config Config, string Weights) Locate(string path)
    {
        if (Directory.Exists(path))
        {
            string cfgPath = Path.Combine(path, ConfigFile), weights = Path.Combine(path, WeightsFile);
            if (!File.Exists(weights)) throw new InputException($"{path}: no {WeightsFile} in the model directory");
            if (File.Exists(cfgPath)) return (Gpt2Config.FromJson(File.ReadAllText(cfgPath), cfgPath), weights);
            path = weights;   // fall through: config may be in the metadata
        }
        if (!File.Exists(path)) throw new InputException($"{path}: no such model directory or file");
        var meta = SafeTensors.Read(path).Metadata;
        if (!meta.TryGetValue("config", out var json))
            throw new InputException($"{path}: no {ConfigFile} beside it and no 'config' in its metadata");
        return (Gpt2Config.FromJson(json, path + " (metadata 'config')"), path);
    }

    static Gpt2<F> Build<F>(Gpt2Config config, IEnumerable<StTensor> tensors, string source, IBackend<F> ops)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var model = new Gpt2<F>(config, ops);
        var byName = model.Parameters.ToDictionary(p => p.Name);
        var seen = new HashSet<string>();
        foreach (var t in tensors)
        {
            string name = t.Name.StartsWith("transformer.", StringComparison.Ordinal) ? t.Name["transformer.".Length..] : t.Name;
            if (Gpt2Buffers().IsMatch(name)) continue;
            if (name == "lm_head.weight" && config.TieWordEmbeddings) continue;   // a tied copy of wte
            if (!byName.TryGetValue(name, out var p))
                throw new InputException($"{source}: unknown tensor '{t.Name}' for a GPT-2 with this config");
            if (!seen.Add(name)) throw new InputException($"{source}: tensor '{name}' appears twice");
            CopyInto(p, t, source);
        }
        var missing = model.Parameters.Where(p => !seen.Contains(p.Name)).Select(p => p.Name).ToList();
        if (missing.Count > 0)
            throw new InputException($"{source}: missing tensor '{missing[0]}'" + (missing.Count > 1 ? $" (and {missing.Count - 1} more)" : ""));
        return model;
    }

    /// <summary>Copies a stored tensor (any float dtype) into a parameter, checking its shape.</summary>
    public static void CopyInto<F>(Parameter<F> p, StTensor t, string source) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var want = p.Value.Shape;
        if (t.Shape.Length != want.Length || !t.Shape.Zip(want).All(x => x.First == x.Second))
            throw new InputException($"{source}: tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", want)}]");
        if (!StDTypeInfo.IsFloat(t.DType))
            throw new InputException($"{source}: tensor '{t.Name}' has dtype {t.DType}, expected a floating-point type");
        if (typeof(F) == typeof(double)) t.ToDoubles().AsSpan().CopyTo(MemoryMarshal.Cast<F, double>(p.Value.Span));
        else if (typeof(F) == typeof(float)) t.ToFloats().AsSpan().CopyTo(MemoryMarshal.Cast<F, float>(p.Value.Span));
        else throw new NotSupportedException(typeof(F).Name);
    }

    /// <summary>A tensor as stored: F32 or F64 (F is converted).</summary>
    public static StTensor ToStored<F>(string name, ReadOnlySpan<F> data, int[] shape, StDType dtype) where F : unmanaged, IFloatingPointIeee754<F>
    {
        long[] s = [.. shape.Select(x => (long)x)];
        if (dtype == StDType.F64)
        {
            var d = new double[data.Length];
            for (int i = 0; i < d.Length; i++) d[i] = double.CreateTruncating(data[i]);
            return StTensor.FromDoubles(name, d, s);
        }
        if (dtype != StDType.F32) throw new ArgumentException($"cannot store parameters as {dtype}");
        var f = new float[data.Length];
        for (int i = 0; i < f.Length; i++) f[i] = float.CreateTruncating(data[i]);
        return StTensor.FromFloats(name, f, s);
    }

    /// <summary>Loads any supported model (dispatch on config.json's model_type).</summary>
    public static ILanguageModel<F> Load<F>(string path, IBackend<F> ops) where F : unmanaged, IFloatingPointIeee754<F> =>
        LoadGpt2(path, ops);

    /// <summary>Writes config.json and model.safetensors (config also in the metadata), each atomically.</summary>
    public static void Save<F>(ILanguageModel<F> model, string dir, StDType dtype = StDType.F32) where F : unmanaged, IFloatingPointIeee754<F>
    {
        Directory.CreateDirectory(dir);
        string json = model.ConfigJson;
        SafeTensors.Write(Path.Combine(dir, WeightsFile),
            model.Parameters.Select(p => ToStored<F>(p.Name, p.Value.Span, p.Value.Shape, dtype)),
            new Dictionary<string, string> { ["config"] = json, ["format"] = "pt" });
        AtomicFile.Write(Path.Combine(dir, ConfigFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(json + "\n")));
    }
}
