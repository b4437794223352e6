using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniTransformer.Models;

/// <summary>GPT-2 hyper-parameters with Hugging Face <c>config.json</c> names.</summary>
public sealed record Gpt2Config(
    int VocabSize, int NPositions, int NEmbd, int NLayer, int NHead,
    double LayerNormEpsilon = 1e-5, int? NInner = null, bool TieWordEmbeddings = true,
    SymmetryBreakingConfig? SymmetryBreaking = null, MlpActivation MlpActivation = MlpActivation.Gelu)
{
    /// <summary>MLP width: n_inner, or 4·d when absent (saturating: an absurd n_embd is reported by <see cref="Validate"/>).</summary>
    public int Ffn => NInner ?? (int)Math.Min(int.MaxValue, 4L * NEmbd);
    public int HeadDim => NEmbd / NHead;

    /// <summary>
    /// Checks every hyper-parameter, then that each parameter tensor fits in one array and that the parameters alone
    /// (as float32, the least this engine stores) fit in the memory the runtime may use; the error names the source.
    /// </summary>
    public void Validate(string source)
    {
        void Need(bool ok, string what) { if (!ok) throw new InputException($"{source}: {what}"); }
        Need(VocabSize > 0, $"vocab_size must be positive (got {VocabSize})");
        Need(NPositions > 0, $"n_positions must be positive (got {NPositions})");
        Need(NEmbd > 0, $"n_embd must be positive (got {NEmbd})");
        Need(NLayer >= 0, $"n_layer must be non-negative (got {NLayer})");
        Need(NHead > 0 && NEmbd % NHead == 0, $"n_head ({NHead}) must be positive and divide n_embd ({NEmbd})");
        Need(NInner is null || NInner > 0, $"n_inner must be positive (got {NInner})");
        Need(LayerNormEpsilon > 0 && double.IsFinite(LayerNormEpsilon), $"layer_norm_epsilon must be positive (got {LayerNormEpsilon})");
        long d = NEmbd, f = NInner ?? 4L * NEmbd;
        foreach (var (what, n) in new (string, long)[]
        {
            ("wte [vocab_size, n_embd]", VocabSize * d), ("wpe [n_positions, n_embd]", NPositions * d),
            ("c_attn [n_embd, 3·n_embd]", d * 3 * d), ("c_fc [n_embd, n_inner]", d * f),
        })
            Need(n <= Array.MaxLength, $"tensor {what} would hold {n:N0} elements, more than one array can ({Array.MaxLength:N0})");
        Training.MemoryEstimate.EnsureParametersFit(ParameterCount, source);
    }

    /// <summary>Parses a Hugging Face GPT-2 <c>config.json</c>; every problem is an <see cref="InputException"/> naming <paramref name="source"/> and the key.</summary>
    public static Gpt2Config FromJson(string json, string source)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 64 }); }
        catch (JsonException e) { throw new InputException($"{source}: invalid JSON ({OneLine(e.Message)})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InputException($"{source}: expected a JSON object, found a JSON {Kind(root.ValueKind)}");
            var keys = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var p in root.EnumerateObject())
                if (!keys.TryAdd(p.Name, p.Value)) throw new InputException($"{source}: key '{p.Name}' appears twice");

            JsonElement? Get(string key) =>
                keys.TryGetValue(key, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

            if (Get("model_type") is JsonElement mt)
            {
                if (mt.ValueKind != JsonValueKind.String)
                    throw new InputException($"{source}: 'model_type' is a JSON {Kind(mt.ValueKind)}, expected the string \"gpt2\"");
                if (mt.GetString() != "gpt2") throw new InputException($"{source}: model_type is '{mt.GetString()}', expected 'gpt2'");
            }

            int Int(string key, int? fallback = null)
            {
                if (Get(key) is not JsonElement e)
                    return fallback ?? throw new InputException($"{source}: missing '{key}'");
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v))
                    throw new InputException($"{source}: '{key}' must be an integer in the int32 range (got {Raw(e)})");
                return v;
            }
            double eps = 1e-5;
            if (Get("layer_norm_epsilon") is JsonElement en)
            {
                if (en.ValueKind != JsonValueKind.Number || !en.TryGetDouble(out eps))
                    throw new InputException($"{source}: 'layer_norm_epsilon' must be a number (got {Raw(en)})");
            }
            bool tie = true;
            if (Get("tie_word_embeddings") is JsonElement tn)
            {
                if (tn.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                    throw new InputException($"{source}: 'tie_word_embeddings' must be true or false (got {Raw(tn)})");
                tie = tn.ValueKind == JsonValueKind.True;
            }
            int? inner = Get("n_inner") is null ? null : Int("n_inner");
            int? ctx = Get("n_ctx") is null ? null : Int("n_ctx");
            var cfg = new Gpt2Config(Int("vocab_size"), Int("n_positions", ctx), Int("n_embd"), Int("n_layer"), Int("n_head"),
                eps, inner, tie);
            cfg.Validate(source);
            // Symmetry-breaking extensions (engine fields; absent in standard GPT-2 configs).
            if (Get("symmetry_breaking") is JsonElement sbe)
                cfg = cfg with { SymmetryBreaking = SymmetryBreakingConfig.FromJson(sbe, source, cfg.HeadDim) };
            if (Get("mlp_activation") is JsonElement ma)
                cfg = cfg with { MlpActivation = SymmetryBreakingConfig.ParseActivation(ma.ValueKind == JsonValueKind.String ? ma.GetString() : Raw(ma), source) };
            return cfg;
        }
    }

    static string Raw(JsonElement e)
    {
        string s = e.GetRawText();
        return s.Length <= 40 ? OneLine(s) : OneLine(s[..40]) + "…";
    }

    static string OneLine(string s) => s.Replace('\r', ' ').Replace('\n', ' ');

    static string Kind(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "value",
    };

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["model_type"] = "gpt2",
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["vocab_size"] = VocabSize,
            ["n_positions"] = NPositions,
            ["n_ctx"] = NPositions,
            ["n_embd"] = NEmbd,
            ["n_layer"] = NLayer,
            ["n_head"] = NHead,
            ["n_inner"] = NInner,
            ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = LayerNormEpsilon,
            ["tie_word_embeddings"] = TieWordEmbeddings,
        };
        if (SymmetryBreaking is { Any: true } sb) o["symmetry_breaking"] = sb.ToJson();
        if (MlpActivation != MlpActivation.Gelu) o["mlp_activation"] = SymmetryBreakingConfig.Name(MlpActivation);
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Parameter count (the tied output map counted once); saturates at long.MaxValue for absurd sizes.</summary>
    public long ParameterCount
    {
        get
        {
            double d = NEmbd, f = NInner ?? 4.0 * NEmbd;
            double perLayer = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * f + f) + (f * d + d);
            double total = (double)VocabSize * d + (double)NPositions * d + NLayer * perLayer + 2 * d
                + (TieWordEmbeddings ? 0 : (double)VocabSize * d) + (MlpActivation == MlpActivation.Prelu ? NLayer * f : 0);
            return total >= long.MaxValue ? long.MaxValue : (long)total;
        }
    }
}
