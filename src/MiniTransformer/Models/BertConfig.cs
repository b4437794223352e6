using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;

namespace MiniTransformer.Models;

/// <summary>
/// BERT hyper-parameters with Hugging Face <c>config.json</c> names. <see cref="Pooler"/> is not a config.json key:
/// a checkpoint has a pooler when it carries <c>bert.pooler.dense.*</c> (BertModel, BertForPreTraining) and none
/// otherwise (BertForMaskedLM). <see cref="MlmHead"/> is false for an encoder-only checkpoint (<c>architectures</c>
/// ["BertModel"], as sentence encoders ship): no <c>cls.predictions.*</c>, no logits, hidden states (and pooler) only.
/// </summary>
public sealed record BertConfig(
    int VocabSize, int MaxPositionEmbeddings, int HiddenSize, int NumHiddenLayers, int NumAttentionHeads,
    int IntermediateSize, int TypeVocabSize = 2, double LayerNormEps = 1e-12, string HiddenAct = "gelu",
    bool Pooler = false, bool TieWordEmbeddings = true, int PadTokenId = 0, bool MlmHead = true,
    SymmetryBreakingConfig? SymmetryBreaking = null, MlpActivation MlpActivation = MlpActivation.Gelu)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>gelu (erf, BERT's) or the tanh approximation (gelu_new, gelu_pytorch_tanh).</summary>
    public GeluForm Gelu => HiddenAct switch
    {
        "gelu" => GeluForm.Erf,
        "gelu_new" or "gelu_pytorch_tanh" => GeluForm.Tanh,
        _ => throw new InputException($"hidden_act '{HiddenAct}' is not supported; expected gelu, gelu_new or gelu_pytorch_tanh"),
    };

    public void Validate(string source)
    {
        void Need(bool ok, string what) { if (!ok) throw new InputException($"{source}: {what}"); }
        Need(VocabSize > 0, $"vocab_size must be positive (got {VocabSize})");
        Need(MaxPositionEmbeddings > 0, $"max_position_embeddings must be positive (got {MaxPositionEmbeddings})");
        Need(HiddenSize > 0, $"hidden_size must be positive (got {HiddenSize})");
        Need(NumHiddenLayers >= 0, $"num_hidden_layers must be non-negative (got {NumHiddenLayers})");
        Need(NumAttentionHeads > 0 && HiddenSize % NumAttentionHeads == 0,
            $"num_attention_heads ({NumAttentionHeads}) must be positive and divide hidden_size ({HiddenSize})");
        Need(IntermediateSize > 0, $"intermediate_size must be positive (got {IntermediateSize})");
        Need(TypeVocabSize > 0, $"type_vocab_size must be positive (got {TypeVocabSize})");
        Need(LayerNormEps > 0 && double.IsFinite(LayerNormEps), $"layer_norm_eps must be positive (got {LayerNormEps})");
        try { _ = Gelu; } catch (InputException e) { throw new InputException($"{source}: {e.Message}"); }
        SymmetryBreaking?.Validate(source, HeadDim);
    }

    public static BertConfig FromJson(string json, string source)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json); }
        catch (JsonException e) { throw new InputException($"{source}: invalid JSON ({e.Message})"); }
        if (root is not JsonObject o) throw new InputException($"{source}: expected a JSON object");
        string? type = Str(o, "model_type", source);
        if (type is not null && type != "bert") throw new InputException($"{source}: model_type is '{type}', expected 'bert'");

        int Int(string key, int? fallback = null)
        {
            var n = o[key];
            if (n is null || n.GetValueKind() == JsonValueKind.Null)
                return fallback ?? throw new InputException($"{source}: missing '{key}' (model_type 'bert' needs it)");
            try { return n.GetValue<int>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InputException($"{source}: '{key}' must be an integer"); }
        }
        double eps = 1e-12;
        if (o["layer_norm_eps"] is JsonNode en)
        {
            try { eps = en.GetValue<double>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new InputException($"{source}: 'layer_norm_eps' must be a number"); }
        }
        string act = Str(o, "hidden_act", source) ?? "gelu";
        string pos = Str(o, "position_embedding_type", source) ?? "absolute";
        if (pos != "absolute")
            throw new InputException($"{source}: position_embedding_type '{pos}' is not supported; expected 'absolute'");
        if (o["is_decoder"] is JsonNode dn && dn.GetValueKind() == JsonValueKind.True)
            throw new InputException($"{source}: is_decoder=true (a causal BERT) is not supported");
        // Encoder-only when config.json names architectures and none of them has the MLM head (BertModel).
        bool mlm = true;
        if (o["architectures"] is JsonArray archs && archs.Count > 0)
            mlm = archs.Any(a => a is JsonValue v && v.GetValueKind() == JsonValueKind.String
                && v.GetValue<string>() is var s && (s.Contains("MaskedLM", StringComparison.Ordinal) || s.Contains("PreTraining", StringComparison.Ordinal)));
        bool tie = o["tie_word_embeddings"] is not JsonNode tn || tn.GetValueKind() != JsonValueKind.False;
        int hidden = Int("hidden_size");
        var cfg = new BertConfig(Int("vocab_size"), Int("max_position_embeddings", 512), hidden, Int("num_hidden_layers"),
            Int("num_attention_heads"), Int("intermediate_size", 4 * hidden), Int("type_vocab_size", 2), eps, act,
            Pooler: false, tie, Int("pad_token_id", 0), mlm);
        cfg.Validate(source);
        // Symmetry-breaking extensions (engine fields, as for GPT-2; absent in standard BERT configs).
        if (o["symmetry_breaking"] is JsonNode sbn && sbn.GetValueKind() != JsonValueKind.Null)
        {
            using var sbd = JsonDocument.Parse(sbn.ToJsonString());
            cfg = cfg with { SymmetryBreaking = SymmetryBreakingConfig.FromJson(sbd.RootElement, source, cfg.HeadDim) };
        }
        if (o["mlp_activation"] is JsonNode man && man.GetValueKind() != JsonValueKind.Null)
            cfg = cfg with { MlpActivation = SymmetryBreakingConfig.ParseActivation(man.GetValueKind() == JsonValueKind.String ? man.GetValue<string>() : man.ToJsonString(), source) };
        return cfg;
    }

    static string? Str(JsonObject o, string key, string source)
    {
        var n = o[key];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        if (n.GetValueKind() != JsonValueKind.String) throw new InputException($"{source}: '{key}' must be a string");
        return n.GetValue<string>();
    }

    public string ToJson()
    {
        var o = new JsonObject
        {
            ["model_type"] = "bert",
            ["architectures"] = new JsonArray(!MlmHead ? "BertModel" : Pooler ? "BertForPreTraining" : "BertForMaskedLM"),
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["intermediate_size"] = IntermediateSize,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["type_vocab_size"] = TypeVocabSize,
            ["layer_norm_eps"] = LayerNormEps,
            ["hidden_act"] = HiddenAct,
            ["position_embedding_type"] = "absolute",
            ["hidden_dropout_prob"] = 0.0,
            ["attention_probs_dropout_prob"] = 0.0,
            ["initializer_range"] = 0.02,
            ["pad_token_id"] = PadTokenId,
            ["tie_word_embeddings"] = TieWordEmbeddings,
        };
        if (SymmetryBreaking is { Any: true } sb) o["symmetry_breaking"] = sb.ToJson();
        if (MlpActivation != MlpActivation.Gelu) o["mlp_activation"] = SymmetryBreakingConfig.Name(MlpActivation);
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Parameter count (the tied decoder counted once; no head when encoder-only).</summary>
    public long ParameterCount
    {
        get
        {
            long d = HiddenSize, f = IntermediateSize, V = VocabSize;
            long perLayer = (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * f + f) + (f * d + d) + 2 * d;
            long embed = V * d + (long)MaxPositionEmbeddings * d + (long)TypeVocabSize * d + 2 * d;
            long head = !MlmHead ? 0 : d * d + d + 2 * d + V + (TieWordEmbeddings ? 0 : V * d);
            return embed + NumHiddenLayers * (perLayer + (MlpActivation == MlpActivation.Prelu ? f : 0)) + head + (Pooler ? d * d + d : 0);
        }
    }
}
