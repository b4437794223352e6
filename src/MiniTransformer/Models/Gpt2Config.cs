using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniTransformer.Models;

/// <summary>GPT-2 hyper-parameters with Hugging Face <c>config.json</c> names.</summary>
public sealed record Gpt2Config(
    int VocabSize, int NPositions, int NEmbd, int NLayer, int NHead,
    double LayerNormEpsilon = 1e-5, int? NInner = null, bool TieWordEmbeddings = true)
{
    /// <summary>MLP width: n_inner, or 4·d when absent.</summary>
    public int Ffn => NInner ?? 4 * NEmbd;
    public int HeadDim => NEmbd / NHead;

    public void Validate(string source)
    {
        void Need(bool ok, string what) { if (!ok) throw new InputException($"{source}: {what}"); }
        Need(VocabSize > 0, $"vocab_size must be positive (got {VocabSize})");
        Need(NPositions > 0, $"n_positions must be positive (got {NPositions})");
        Need(NEmbd > 0, $"n_embd must be positive (got {NEmbd})");
        Need(NLayer >= 0, $"n_layer must be non-negative (got {NLayer})");
        Need(NHead > 0 && NEmbd % NHead == 0, $"n_head ({NHead}) must be positive and divide n_embd ({NEmbd})");
        Need(Ffn > 0, $"n_inner must be positive (got {Ffn})");
        Need(LayerNormEpsilon > 0 && double.IsFinite(LayerNormEpsilon), $"layer_norm_epsilon must be positive (got {LayerNormEpsilon})");
    }

    public static Gpt2Config FromJson(string json, string source)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new InputException($"{source}: invalid JSON ({e.Message})"); }
        if (root is not JsonObject o) throw new InputException($"{source}: expected a JSON object");
        string? type = (string?)o["model_type"];
        if (type is not null && type != "gpt2") throw new InputException($"{source}: model_type is '{type}', expected 'gpt2'");

        int Int(string key, int? fallback = null)
        {
            var n = o[key];
            if (n is null || n.GetValueKind() == JsonValueKind.Null)
                return fallback ?? throw new InputException($"{source}: missing '{key}'");
            try { return n.GetValue<int>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InputException($"{source}: '{key}' must be an integer"); }
        }
        double eps = 1e-5;
        if (o["layer_norm_epsilon"] is JsonNode en)
        {
            try { eps = en.GetValue<double>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InputException($"{source}: 'layer_norm_epsilon' must be a number"); }
        }
        int? inner = o["n_inner"] is JsonNode ni && ni.GetValueKind() != JsonValueKind.Null ? Int("n_inner") : null;
        bool tie = o["tie_word_embeddings"] is not JsonNode tn || tn.GetValueKind() != JsonValueKind.False;
        var cfg = new Gpt2Config(Int("vocab_size"), Int("n_positions", o["n_ctx"] is null ? null : Int("n_ctx")),
            Int("n_embd"), Int("n_layer"), Int("n_head"), eps, inner, tie);
        cfg.Validate(source);
        return cfg;
    }

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
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Parameter count (the tied output map counted once).</summary>
    public long ParameterCount
    {
        get
        {
            long d = NEmbd, f = Ffn;
            long perLayer = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * f + f) + (f * d + d);
            return (long)VocabSize * d + (long)NPositions * d + NLayer * perLayer + 2 * d
                + (TieWordEmbeddings ? 0 : (long)VocabSize * d);
        }
    }
}
