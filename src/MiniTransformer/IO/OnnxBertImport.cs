using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;

namespace MiniTransformer.IO;

/// <summary>
/// Converts a Hugging Face BERT exported to ONNX (torch.onnx of BertModel / BertForMaskedLM) into the engine's Hugging
/// Face layout. Named initializers (embeddings, LayerNorms, biases, the pooler) keep their names. The Linear weights of
/// such exports are anonymous initializers stored [in, out] feeding <c>MatMul</c> nodes: each is named by following its
/// MatMul to the <c>Add</c> that takes a named bias (<c>….bias</c> → <c>….weight</c>) and transposed to [out, in]. The
/// pooler is a <c>Gemm</c> (transB says its layout). The head count comes from the graph: the shape constant of the
/// Reshape that splits the first layer's query into heads ([B, T, H, d_h]); the LayerNorm epsilon from the constant
/// added before its square root; the activation from the presence of <c>Erf</c> (exact gelu).
/// </summary>
public static class OnnxBertImport
{
    public sealed record Result(BertConfig Config, List<StTensor> Tensors, Dictionary<string, string> Provenance);

    public static Result Convert(OnnxModel m)
    {
        string src = m.Source;
        var consumers = new Dictionary<string, List<OnnxNode>>(StringComparer.Ordinal);
        var producer = new Dictionary<string, OnnxNode>(StringComparer.Ordinal);
        foreach (var n in m.Nodes)
        {
            foreach (var i in n.Inputs) { if (!consumers.TryGetValue(i, out var l)) consumers[i] = l = []; l.Add(n); }
            foreach (var o in n.Outputs) producer[o] = n;
        }
        List<OnnxNode> Users(string name) => consumers.TryGetValue(name, out var l) ? l : [];

        bool IsFloat(OnnxTensor t) => t.DataType is OnnxTensor.Float or OnnxTensor.Double or OnnxTensor.Float16;
        static bool LooksNamed(string name) => name.Contains('.', StringComparison.Ordinal);
        var tensors = new Dictionary<string, StTensor>(StringComparer.Ordinal);
        var weights = new HashSet<string>(StringComparer.Ordinal);   // initializers taken as MatMul/Gemm weights

        void Add(string name, float[] data, long[] shape, string from)
        {
            if (!tensors.TryAdd(name, StTensor.FromFloats(name, data, shape)))
                throw new InputException($"{src}: two initializers map to '{name}' (the second is '{from}')");
        }
        float[] Floats(OnnxTensor t) => [.. t.ToDoubles(src).Select(x => (float)x)];
        static float[] Transpose(float[] a, int rows, int cols)
        {
            var r = new float[a.Length];
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) r[j * rows + i] = a[i * cols + j];
            return r;
        }

        // 1. Linear weights: MatMul(x, W) followed by Add(named bias).
        foreach (var n in m.Nodes.Where(n => n.OpType == "MatMul"))
        {
            if (n.Inputs.Count != 2 || !m.Initializers.TryGetValue(n.Inputs[1], out var w)) continue;   // activation × activation
            if (w.Dims.Length != 2) throw new InputException($"{src}: MatMul '{n.Name}' has a weight '{w.Name}' of rank {w.Dims.Length}, expected 2");
            string? bias = Users(n.Outputs[0]).Where(u => u.OpType == "Add")
                .SelectMany(u => u.Inputs).FirstOrDefault(i => i != n.Outputs[0] && m.Initializers.ContainsKey(i) && LooksNamed(i));
            string name;
            if (bias is not null)
            {
                string b = ModelFiles.BertCanonicalName(bias);
                if (!b.EndsWith(".bias", StringComparison.Ordinal))
                    throw new InputException($"{src}: MatMul '{n.Name}' is followed by an Add of '{bias}', which is not a bias");
                name = b is "cls.predictions.bias" or "cls.predictions.decoder.bias" ? "cls.predictions.decoder.weight" : b[..^"bias".Length] + "weight";
            }
            else if (LooksNamed(w.Name) && ModelFiles.BertCanonicalName(w.Name).EndsWith(".weight", StringComparison.Ordinal))
                name = ModelFiles.BertCanonicalName(w.Name);
            else
                throw new InputException($"{src}: cannot name the weight '{w.Name}' of MatMul '{n.Name}': no Add with a named bias follows it");
            int rows = (int)w.Dims[0], cols = (int)w.Dims[1];   // [in, out]
            Add(name, Transpose(Floats(w), rows, cols), [cols, rows], w.Name);
            weights.Add(w.Name);
        }

        // 2. Gemm (the pooler): Y = A·op(B) + C, op(B) = Bᵀ when transB = 1, so B is already [out, in] then.
        foreach (var n in m.Nodes.Where(n => n.OpType == "Gemm"))
        {
            if (n.Inputs.Count < 2 || !m.Initializers.TryGetValue(n.Inputs[1], out var w)) continue;
            if ((n.Int("transA") ?? 0) != 0 || (n.Float("alpha") ?? 1f) != 1f || (n.Float("beta") ?? 1f) != 1f)
                throw new InputException($"{src}: Gemm '{n.Name}' has transA/alpha/beta other than 0/1/1, which a Linear layer never has");
            string? bias = n.Inputs.Count > 2 && LooksNamed(n.Inputs[2]) ? ModelFiles.BertCanonicalName(n.Inputs[2]) : null;
            string name = LooksNamed(w.Name) ? ModelFiles.BertCanonicalName(w.Name)
                : bias?.EndsWith(".bias", StringComparison.Ordinal) == true ? bias[..^"bias".Length] + "weight"
                : throw new InputException($"{src}: cannot name the weight '{w.Name}' of Gemm '{n.Name}'");
            int rows = (int)w.Dims[0], cols = (int)w.Dims[1];
            bool transB = (n.Int("transB") ?? 0) != 0;
            Add(name, transB ? Floats(w) : Transpose(Floats(w), rows, cols), transB ? [rows, cols] : [cols, rows], w.Name);
            weights.Add(w.Name);
        }

        // 3. Named float initializers as they are; anything else large and anonymous is an error.
        foreach (var t in m.Initializers.Values)
        {
            if (weights.Contains(t.Name)) continue;
            if (!IsFloat(t)) continue;                  // position_ids and shape constants
            if (!LooksNamed(t.Name))
            {
                if (t.Count <= 1) continue;             // scalar constants
                throw new InputException($"{src}: cannot name the anonymous initializer '{t.Name}' [{string.Join(", ", t.Dims)}]: it feeds no MatMul with a named bias");
            }
            Add(ModelFiles.BertCanonicalName(t.Name), Floats(t), t.Dims, t.Name);
        }

        // 4. The configuration, from the tensors and the graph.
        StTensor Need(string name) => tensors.TryGetValue(name, out var t) ? t
            : throw new InputException($"{src}: no initializer for '{name}' (is this a BERT export?)");
        var wte = Need("bert.embeddings.word_embeddings.weight");
        var wpe = Need("bert.embeddings.position_embeddings.weight");
        var wtt = Need("bert.embeddings.token_type_embeddings.weight");
        int V = (int)wte.Shape[0], C = (int)wte.Shape[1];
        var layerIdx = tensors.Keys.Select(k => System.Text.RegularExpressions.Regex.Match(k, @"^bert\.encoder\.layer\.(\d+)\."))
            .Where(x => x.Success).Select(x => int.Parse(x.Groups[1].Value, CultureInfo.InvariantCulture)).Distinct().ToList();
        int L = layerIdx.Count == 0 ? 0 : layerIdx.Max() + 1;
        if (layerIdx.Count != L) throw new InputException($"{src}: encoder layers are not numbered 0..{L - 1}");
        int Fd = L > 0 ? (int)Need("bert.encoder.layer.0.intermediate.dense.bias").Shape[0] : 4 * C;

        var (heads, headsFrom) = Heads(m, producer, Users, C, src);
        var (eps, epsFrom) = Epsilon(m, producer, src);
        string act = m.Nodes.Any(n => n.OpType == "Erf") ? "gelu"
            : m.Nodes.Any(n => n.OpType == "Pow" && ConstValue(m, producer, n.Inputs[1], src) is [3]) ? "gelu_new"
            : m.Nodes.Any(n => n.OpType == "Gelu") ? "gelu"
            : throw new InputException($"{src}: cannot identify the MLP activation (no Erf, no x³ of the tanh form, no Gelu node)");
        bool pooler = tensors.ContainsKey("bert.pooler.dense.weight");
        bool mlm = tensors.Keys.Any(k => k.StartsWith("cls.predictions.", StringComparison.Ordinal));
        bool tied = true;
        if (tensors.TryGetValue("cls.predictions.decoder.weight", out var dec))
            tied = dec.ToFloats().AsSpan().SequenceEqual(wte.ToFloats());
        var config = new BertConfig(V, (int)wpe.Shape[0], C, L, heads, Fd, (int)wtt.Shape[0], eps, act, pooler, tied, 0, mlm);
        config.Validate(src);

        var prov = new Dictionary<string, string>
        {
            ["producer"] = $"{m.ProducerName} {m.ProducerVersion}".Trim(),
            ["opset"] = string.Join(",", m.Opsets.Select(o => (o.Domain == "" ? "ai.onnx" : o.Domain) + ":" + o.Version)),
            ["nodes"] = m.Nodes.Count.ToString(CultureInfo.InvariantCulture),
            ["initializers"] = m.Initializers.Count.ToString(CultureInfo.InvariantCulture),
            ["heads_from"] = headsFrom,
            ["layer_norm_eps_from"] = epsFrom,
            ["hidden_act_from"] = act == "gelu" ? "Erf node (exact gelu)" : "tanh form",
            ["outputs"] = string.Join(",", m.Outputs.Select(o => o.Name)),
        };
        return new(config, [.. tensors.Values], prov);
    }

    /// <summary>Integer values of a constant (initializer, Constant node, or Unsqueeze/Concat/Cast of constants);
    /// null entries where a value is computed at run time (a dimension taken from Shape); null if not constant-shaped.</summary>
    static long?[]? ConstValue(OnnxModel m, Dictionary<string, OnnxNode> producer, string name, string src, int depth = 0)
    {
        if (depth > 8) return null;
        if (m.Initializers.TryGetValue(name, out var t)) return [.. t.ToInt64s(src).Select(x => (long?)x)];
        if (!producer.TryGetValue(name, out var n)) return null;
        switch (n.OpType)
        {
            case "Constant":
                return n.Attributes.TryGetValue("value", out var a) && a.T is not null ? [.. a.T.ToInt64s(src).Select(x => (long?)x)] : null;
            case "Unsqueeze" or "Cast" or "Identity" or "Squeeze":
                return ConstValue(m, producer, n.Inputs[0], src, depth + 1) ?? (n.OpType == "Unsqueeze" ? [null] : null);
            case "Concat":
                var parts = n.Inputs.Select(i => ConstValue(m, producer, i, src, depth + 1)).ToList();
                return parts.Any(p => p is null) ? null : [.. parts.SelectMany(p => p!)];
            default:
                return null;
        }
    }

    /// <summary>Heads from the Reshape that splits the first layer's query (or key) projection into [B, T, H, d_h].</summary>
    static (int Heads, string From) Heads(OnnxModel m, Dictionary<string, OnnxNode> producer, Func<string, List<OnnxNode>> users, int C, string src)
    {
        foreach (string part in new[] { "query", "key", "value" })
        {
            string? bias = m.Initializers.Keys.FirstOrDefault(k => ModelFiles.BertCanonicalName(k) == $"bert.encoder.layer.0.attention.self.{part}.bias");
            if (bias is null) continue;
            // Walk forward a few nodes from the Add of the bias to the first Reshape with a 4-element shape.
            var frontier = users(bias).Where(u => u.OpType == "Add").SelectMany(u => u.Outputs).ToList();
            for (int hop = 0; hop < 4 && frontier.Count > 0; hop++)
            {
                var next = new List<string>();
                foreach (var v in frontier)
                    foreach (var u in users(v))
                    {
                        if (u.OpType == "Reshape" && u.Inputs.Count > 1 && u.Inputs[0] == v
                            && ConstValue(m, producer, u.Inputs[1], src) is { Length: 4 } s)
                        {
                            long? h = s[2], d = s[3];
                            if (h is > 0 && d is > 0 && h * d == C) return ((int)h, $"Reshape '{u.Name}' of the layer-0 {part}: shape [·, ·, {h}, {d}]");
                            if (h is > 0 && d is null or -1 && C % h == 0) return ((int)h, $"Reshape '{u.Name}' of the layer-0 {part}: shape [·, ·, {h}, -1]");
                            if (d is > 0 && h is null or -1 && C % d == 0) return ((int)(C / d), $"Reshape '{u.Name}' of the layer-0 {part}: head size {d}");
                        }
                        if (u.OpType is "Reshape" or "Transpose" or "Identity" or "Cast") next.AddRange(u.Outputs);
                    }
                frontier = next;
            }
        }
        throw new InputException($"{src}: cannot infer the number of attention heads: no Reshape of the first layer's query/key/value into [B, T, H, d_h] with constant H or d_h");
    }

    /// <summary>LayerNorm epsilon: a LayerNormalization node's attribute, or the constant added to the variance before Sqrt.</summary>
    static (double Eps, string From) Epsilon(OnnxModel m, Dictionary<string, OnnxNode> producer, string src)
    {
        if (m.Nodes.FirstOrDefault(n => n.OpType == "LayerNormalization") is { } ln)
            return (ln.Float("epsilon") ?? 1e-5f, $"LayerNormalization '{ln.Name}' epsilon");
        foreach (var sq in m.Nodes.Where(n => n.OpType == "Sqrt"))
        {
            if (!producer.TryGetValue(sq.Inputs[0], out var add) || add.OpType != "Add") continue;
            foreach (var i in add.Inputs)
            {
                OnnxTensor? t = m.Initializers.TryGetValue(i, out var it) ? it
                    : producer.TryGetValue(i, out var c) && c.OpType == "Constant" && c.Attributes.TryGetValue("value", out var a) ? a.T : null;
                if (t is { Count: 1 } && t.DataType is OnnxTensor.Float or OnnxTensor.Double)
                {
                    double e = t.ToDoubles(src)[0];
                    // Stored as float32: 1e-12 reads 9.99999996e-13; keep the decimal the exporter started from.
                    double rounded = double.Parse(((float)e).ToString("G7", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
                    return (rounded, $"constant added before Sqrt '{sq.Name}' ({e:G9})");
                }
            }
        }
        throw new InputException($"{src}: cannot find the LayerNorm epsilon (no LayerNormalization node, no constant added before a Sqrt)");
    }

    /// <summary>
    /// <c>mt import onnx</c>: reads the ONNX file, converts it, checks the vocabulary against the embedding table, loads
    /// the result through the ordinary BERT loader (so every tensor is checked), and writes config.json,
    /// model.safetensors (F32), vocab.txt and import.json (provenance). Returns the config.
    /// </summary>
    public static BertConfig Import(string onnxPath, string vocabPath, string outDir, string? sourceLabel = null)
    {
        if (!File.Exists(vocabPath)) throw new InputException($"{vocabPath}: no such vocabulary file");
        var model = OnnxModel.Read(onnxPath);
        var r = Convert(model);
        int vocabLines = File.ReadAllLines(vocabPath).Length;
        if (vocabLines != r.Config.VocabSize)
            throw new InputException($"{vocabPath}: {vocabLines} tokens, but the model's word embeddings have {r.Config.VocabSize} rows");
        var bert = ModelFiles.BuildBert(r.Config, r.Tensors, onnxPath, CpuBackend<float>.Instance);
        Directory.CreateDirectory(outDir);
        ModelFiles.Save(bert, outDir, StDType.F32);
        File.Copy(vocabPath, Path.Combine(outDir, "vocab.txt"), overwrite: true);
        var prov = new JsonObject { ["source"] = sourceLabel ?? Path.GetFullPath(onnxPath) };
        using (var f = File.OpenRead(onnxPath)) prov["sha256"] = System.Convert.ToHexStringLower(SHA256.HashData(f));
        foreach (var (k, v) in r.Provenance) prov[k] = v;
        prov["parameters"] = bert.Parameters.Sum(p => (long)p.Value.Length);
        File.WriteAllText(Path.Combine(outDir, "import.json"), prov.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n");
        return bert.Config;
    }
}
