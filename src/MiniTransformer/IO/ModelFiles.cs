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
        var (json, source, weights) = LocateJson(path);
        return (Gpt2Config.FromJson(json, source), weights);
    }

    /// <summary>Resolves a model path to (config.json text, where it came from, weights file).</summary>
    static (string Json, string Source, string Weights) LocateJson(string path)
    {
        if (Directory.Exists(path))
        {
            string cfgPath = Path.Combine(path, ConfigFile), weights = Path.Combine(path, WeightsFile);
            if (!File.Exists(weights)) throw new InputException($"{path}: no {WeightsFile} in the model directory");
            if (File.Exists(cfgPath)) return (File.ReadAllText(cfgPath), cfgPath, weights);
            path = weights;   // fall through: config may be in the metadata
        }
        if (!File.Exists(path)) throw new InputException($"{path}: no such model directory or file");
        var meta = SafeTensors.Read(path).Metadata;
        if (!meta.TryGetValue("config", out var json))
            throw new InputException($"{path}: no {ConfigFile} beside it and no 'config' in its metadata");
        return (json, path + " (metadata 'config')", path);
    }

    /// <summary>
    /// "bert" when the model's config.json says model_type "bert"; otherwise "gpt2" (also for an llm.c .bin, a missing
    /// model_type, and anything malformed, which the GPT-2 loader then reports in detail).
    /// </summary>
    public static string ModelType(string path)
    {
        if (path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) && File.Exists(path)) return "gpt2";
        var (json, _, _) = LocateJson(path);
        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(json) is System.Text.Json.Nodes.JsonObject o
                && o["model_type"] is System.Text.Json.Nodes.JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.String
                && v.GetValue<string>() == "bert" ? "bert" : "gpt2";
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            return "gpt2";
        }
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
        ModelType(path) == "bert" ? LoadBert(path, ops) : LoadGpt2(path, ops);

    /// <summary>Writes config.json and model.safetensors (config also in the metadata), each atomically.</summary>
    public static void Save<F>(ILanguageModel<F> model, string dir, StDType dtype = StDType.F32) where F : unmanaged, IFloatingPointIeee754<F>
    {
        Directory.CreateDirectory(dir);
        string json = model.ConfigJson;
        SafeTensors.Write(Path.Combine(dir, WeightsFile),
            HfTensors(model, p => p.Value).Select(t => ToStored<F>(t.Name, t.Data, t.Shape, dtype)),
            new Dictionary<string, string> { ["config"] = json, ["format"] = "pt" });
        AtomicFile.Write(Path.Combine(dir, ConfigFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(json + "\n")));
    }

    // ---------------- BERT ----------------

    /// <summary>Tensors real BERT checkpoints carry that the engine does not use (after prefix normalisation).</summary>
    [GeneratedRegex(@"^(bert\.embeddings\.position_ids|cls\.seq_relationship\..+)$")]
    private static partial Regex BertSkipped();

    [GeneratedRegex(@"^(bert\.encoder\.layer\.\d+\.attention\.self)\.(query|key|value)\.(weight|bias)$")]
    private static partial Regex BertQkvPart();

    [GeneratedRegex(@"^(bert\.encoder\.layer\.\d+\.attention\.self)\.qkv\.(weight|bias)$")]
    private static partial Regex BertQkvPacked();

    /// <summary>
    /// A BERT tensor name in the engine's spelling: the <c>bert.</c> prefix added where it is missing
    /// (<c>embeddings.*</c>, <c>encoder.*</c>, <c>pooler.*</c>) and TensorFlow-era <c>LayerNorm.gamma/beta</c> read as
    /// <c>LayerNorm.weight/bias</c>.
    /// </summary>
    public static string BertCanonicalName(string name)
    {
        if (name.StartsWith("embeddings.", StringComparison.Ordinal) || name.StartsWith("encoder.", StringComparison.Ordinal)
            || name.StartsWith("pooler.", StringComparison.Ordinal))
            name = "bert." + name;
        if (name.EndsWith("LayerNorm.gamma", StringComparison.Ordinal)) name = name[..^"gamma".Length] + "weight";
        else if (name.EndsWith("LayerNorm.beta", StringComparison.Ordinal)) name = name[..^"beta".Length] + "bias";
        return name;
    }

    public static Bert<F> LoadBert<F>(string path, IBackend<F> ops) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var (json, source, weights) = LocateJson(path);
        var config = BertConfig.FromJson(json, source);
        var file = SafeTensors.Read(weights);
        return BuildBert(config, file.Tensors, weights, ops);
    }

    /// <summary>
    /// Builds a BERT from Hugging Face tensors: <c>bert.</c> prefix optional, LayerNorm gamma/beta accepted, query/key/value
    /// packed into the attention block's [q | k | v], <c>position_ids</c> and the NSP head skipped, the tied
    /// <c>cls.predictions.decoder.weight</c> skipped and <c>cls.predictions.decoder.bias</c> read as
    /// <c>cls.predictions.bias</c> when that is absent. The pooler is present when the file has it; the MLM head when
    /// the config does not say encoder-only (<see cref="BertConfig.MlmHead"/>) or the file has it.
    /// </summary>
    public static Bert<F> BuildBert<F>(BertConfig config, IEnumerable<StTensor> tensors, string source, IBackend<F> ops)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var byName = new Dictionary<string, StTensor>();
        foreach (var t in tensors)
        {
            string name = BertCanonicalName(t.Name);
            if (BertSkipped().IsMatch(name)) continue;
            if (!byName.TryAdd(name, t)) throw new InputException($"{source}: tensor '{name}' appears twice (as '{byName[name].Name}' and '{t.Name}')");
        }
        if (byName.Remove("cls.predictions.decoder.bias", out var decBias)) byName.TryAdd("cls.predictions.bias", decBias);
        if (config.TieWordEmbeddings) byName.Remove("cls.predictions.decoder.weight");
        bool pooler = byName.ContainsKey("bert.pooler.dense.weight") || byName.ContainsKey("bert.pooler.dense.bias");
        // The MLM head is there when config.json asks for it (the default) or the file carries it; an encoder-only
        // checkpoint (architectures ["BertModel"], no cls.predictions.*) loads without it.
        bool mlm = config.MlmHead || byName.Keys.Any(k => k.StartsWith("cls.predictions.", StringComparison.Ordinal));
        var model = new Bert<F>(config with { Pooler = pooler, MlmHead = mlm }, ops);
        var parms = model.Parameters.ToDictionary(p => p.Name);
        int C = config.HiddenSize;
        var seen = new HashSet<string>();
        foreach (var (name, t) in byName)
        {
            if (BertQkvPart().Match(name) is { Success: true } m)
            {
                string packed = $"{m.Groups[1].Value}.qkv.{m.Groups[3].Value}";
                if (!parms.TryGetValue(packed, out var p))
                    throw new InputException($"{source}: unknown tensor '{t.Name}' for a BERT with this config");
                int part = m.Groups[2].Value switch { "query" => 0, "key" => 1, _ => 2 };
                bool isWeight = m.Groups[3].Value == "weight";
                int[] want = isWeight ? [C, C] : [C];
                var tmp = new Parameter<F>(name, new Tensor<F>(want));
                CopyInto(tmp, t, source);
                tmp.Value.Span.CopyTo(p.Value.Span.Slice(part * tmp.Value.Length, tmp.Value.Length));
                seen.Add(name);
                continue;
            }
            if (!parms.TryGetValue(name, out var q) || BertQkvPacked().IsMatch(name))
                throw new InputException($"{source}: unknown tensor '{t.Name}' for a BERT with this config");
            CopyInto(q, t, source);
            seen.Add(name);
        }
        var missing = HfTensors(model, p => p.Value).Select(t => t.Name).Where(n => !seen.Contains(n)).ToList();
        if (missing.Count > 0)
            throw new InputException($"{source}: missing tensor '{missing[0]}'" + (missing.Count > 1 ? $" (and {missing.Count - 1} more)" : ""));
        return model;
    }

    /// <summary>
    /// The model's tensors under their Hugging Face names and layouts, taking each parameter's value or gradient through
    /// <paramref name="pick"/>: GPT-2's as they are; BERT's packed attention.self.qkv split into query, key and value.
    /// </summary>
    public static IEnumerable<(string Name, F[] Data, int[] Shape)> HfTensors<F>(ILanguageModel<F> model, Func<Parameter<F>, Tensor<F>> pick)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        foreach (var p in model.Parameters)
        {
            var t = pick(p);
            if (model.Arch == "bert" && BertQkvPacked().Match(p.Name) is { Success: true } m)
            {
                int part = t.Length / 3;
                int[] shape = t.Rank == 2 ? [t.Shape[0] / 3, t.Shape[1]] : [t.Shape[0] / 3];
                string[] names = ["query", "key", "value"];
                for (int k = 0; k < 3; k++)
                    yield return ($"{m.Groups[1].Value}.{names[k]}.{m.Groups[2].Value}", t.Data.AsSpan(k * part, part).ToArray(), shape);
                continue;
            }
            yield return (p.Name, t.Data, t.Shape);
        }
    }
}
