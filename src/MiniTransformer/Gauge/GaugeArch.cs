using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using System.Numerics;

namespace MiniTransformer.Gauge;

/// <summary>One attention sublayer: the query, key, value maps and the output map (rows grouped per head).</summary>
public sealed record AttnSpec(int Layer, MapRef Q, MapRef K, MapRef V, MapRef O, int Heads, int HeadDim);

/// <summary>
/// A LayerNorm whose output feeds linear maps only (so its gain, bias and the mean direction its normalised output
/// lacks can be moved into the maps it feeds). <see cref="Readers"/> are those maps, all reading the full LN output.
/// </summary>
public sealed record LnSpec(string Name, string Gain, string Bias, MapRef[] Readers);

/// <summary>
/// A post-LN LayerNorm whose output feeds a sublayer (<see cref="Readers"/>, all reading the full LN output) and, through
/// the skip connection, the residual sum x + Sublayer(x) that the next LayerNorm normalises; <see cref="Writer"/> is the
/// sublayer's output map (attention output or MLP output projection).
/// </summary>
public sealed record PostLnSpec(string Name, string Gain, string Bias, MapRef[] Readers, MapRef Writer)
{
    public LnSpec AsLn => new(Name, Gain, Bias, Readers);
}

/// <summary>
/// What the gauge toolkit needs to know about an architecture: which linear maps read and write the residual
/// stream, which LayerNorms feed which maps, the attention blocks, the embedding tables and the output map.
/// Built from a config by <see cref="ForGpt2"/> or <see cref="ForBert"/>.
/// </summary>
public sealed class GaugeArch
{
    public required string Arch { get; init; }
    public required int D { get; init; }
    public required int Heads { get; init; }
    public required int Ffn { get; init; }
    public required int Vocab { get; init; }
    public required int Positions { get; init; }
    public required int Layers { get; init; }
    public required double Eps { get; init; }
    public required bool Tied { get; init; }
    /// <summary>Pre-LN: every reader of the residual stream is a LayerNorm (GPT-2).</summary>
    public required bool PreLn { get; init; }
    public int HeadDim => D / Heads;

    public required AttnSpec[] Attention { get; init; }
    /// <summary>LayerNorms whose output feeds linear maps only (GPT-2: ln_1, ln_2, and ln_f when untied).</summary>
    public required LnSpec[] FoldableLns { get; init; }
    /// <summary>LayerNorms that read the residual stream (pre-LN), with their readers — what the residual rotation acts on.</summary>
    public required LnSpec[] ResidualReaders { get; init; }
    /// <summary>Maps writing into the residual stream whose output only LayerNorms read (attention and MLP output maps).</summary>
    public required MapRef[] ResidualWriters { get; init; }
    /// <summary>MLP input maps (hidden units), for reports.</summary>
    public required MapRef[] MlpIn { get; init; }
    /// <summary>Per layer, the MLP's output map (reads the F hidden units), paired with <see cref="MlpIn"/>.</summary>
    public MapRef[] MlpOut { get; init; } = [];
    public required string TokenEmbedding { get; init; }
    public required string PositionEmbedding { get; init; }
    /// <summary>
    /// The output map h → logits, [d, V] in the notation (the token table when tied). An encoder-only model has
    /// none (reading it throws); see <see cref="HasUntiedOutputMap"/>.
    /// </summary>
    public MapRef OutputMap
    {
        get => outputMap ?? throw new InvalidOperationException($"{Arch}: encoder-only, no output map (no logits)");
        init => outputMap = value;
    }
    MapRef? outputMap;
    /// <summary>
    /// Encoder-only (BERT without its MLM head, e.g. a sentence encoder): no logits; the observable the gauge must keep
    /// is the last hidden state (and the pooler output, when there is a pooler). <see cref="Tied"/> is false: the token
    /// table is an input embedding only.
    /// </summary>
    public bool EncoderOnly { get; init; }
    /// <summary>Whether logits come from an output map of their own (not the token table), whose shifts along 1_V the log-softmax ignores.</summary>
    public bool HasUntiedOutputMap => !Tied && !EncoderOnly;
    /// <summary>The final LayerNorm feeding the output map (encoder-only: the last LayerNorm, whose output is the observable).</summary>
    public required string FinalLnGain { get; init; }
    public required string FinalLnBias { get; init; }

    /// <summary>BERT's token-type table [S, d] (null for GPT-2).</summary>
    public string? TypeEmbedding { get; init; }
    public int Types { get; init; }
    /// <summary>
    /// LayerNorms whose readers can take the mean direction (the normalised output is orthogonal to 1): GPT-2's foldable
    /// ones; in a post-LN model every LayerNorm feeding linear maps, skip connection or not.
    /// </summary>
    public LnSpec[] MeanLns { get => meanLns ?? FoldableLns; init => meanLns = value; }
    LnSpec[]? meanLns;
    /// <summary>Post-LN LayerNorms feeding a sublayer and its skip connection (BERT: the embedding LayerNorm, each attention LayerNorm, every output LayerNorm but the last).</summary>
    public PostLnSpec[] PostLns { get; init; } = [];
    /// <summary>Parameters that never reach the logits (an MLM BERT's pooler): null directions reported as `unused`, apart.</summary>
    public string[] Unused { get; init; } = [];
    /// <summary>Extra rows for the Jacobian and invariance inputs: BERT has token types.</summary>
    public bool HasTypes => TypeEmbedding is not null;
    /// <summary>How many scalars <see cref="Unused"/> holds.</summary>
    public long UnusedCount { get; init; }

    public static GaugeArch ForGpt2(Gpt2Config c)
    {
        int d = c.NEmbd, f = c.Ffn, H = c.NHead;
        var attn = new List<AttnSpec>();
        var lns = new List<LnSpec>();
        var writers = new List<MapRef>();
        var mlpIn = new List<MapRef>();
        var mlpOut = new List<MapRef>();
        for (int i = 0; i < c.NLayer; i++)
        {
            string p = $"h.{i}.";
            var qkv = MapRef.Full(p + "attn.c_attn.weight", p + "attn.c_attn.bias", WeightLayout.InOut, d, 3 * d);
            var o = MapRef.Full(p + "attn.c_proj.weight", p + "attn.c_proj.bias", WeightLayout.InOut, d, d);
            var fc = MapRef.Full(p + "mlp.c_fc.weight", p + "mlp.c_fc.bias", WeightLayout.InOut, d, f);
            var proj = MapRef.Full(p + "mlp.c_proj.weight", p + "mlp.c_proj.bias", WeightLayout.InOut, f, d);
            attn.Add(new AttnSpec(i, qkv.Sub(0, d), qkv.Sub(d, d), qkv.Sub(2 * d, d), o, H, d / H));
            lns.Add(new LnSpec(p + "ln_1", p + "ln_1.weight", p + "ln_1.bias", [qkv]));
            lns.Add(new LnSpec(p + "ln_2", p + "ln_2.weight", p + "ln_2.bias", [fc]));
            writers.Add(o);
            writers.Add(proj);
            mlpIn.Add(fc);
            mlpOut.Add(proj);
        }
        var output = c.TieWordEmbeddings
            ? MapRef.Full("wte.weight", null, WeightLayout.OutIn, d, c.VocabSize)
            : MapRef.Full("lm_head.weight", null, WeightLayout.OutIn, d, c.VocabSize);
        var lnf = new LnSpec("ln_f", "ln_f.weight", "ln_f.bias", [output]);
        return new GaugeArch
        {
            Arch = "gpt2", D = d, Heads = H, Ffn = f, Vocab = c.VocabSize, Positions = c.NPositions, Layers = c.NLayer,
            Eps = c.LayerNormEpsilon, Tied = c.TieWordEmbeddings, PreLn = true,
            Attention = [.. attn],
            // The tied ln_f feeds the token table, which is also the input embedding: not foldable.
            FoldableLns = c.TieWordEmbeddings ? [.. lns] : [.. lns, lnf],
            ResidualReaders = [.. lns, lnf],
            ResidualWriters = [.. writers],
            MlpIn = [.. mlpIn],
            MlpOut = [.. mlpOut],
            TokenEmbedding = "wte.weight", PositionEmbedding = "wpe.weight",
            OutputMap = output, FinalLnGain = "ln_f.weight", FinalLnBias = "ln_f.bias",
        };
    }

    /// <summary>
    /// BERT with its masked-LM head (post-LN), or encoder-only (<see cref="BertConfig.MlmHead"/> false: the observable is
    /// the last hidden state x_L and the pooler output, <see cref="EncoderOnly"/>):
    /// x₀ = LN_emb(E[id] + P[pos] + S[type]); per layer h = LN_attn(x + Attn(x)), x′ = LN_out(h + MLP(h));
    /// logits = LN_head(gelu(x_L·W_t + b_t))·W_decᵀ + b_dec (W_dec = E when tied). Linear weights are stored [out, in].
    /// Only the last LN_out feeds linear maps alone (the head's dense): it is the one fully foldable LayerNorm of a tied
    /// BERT; the others feed a sublayer and the skip path, so only their bias (postln) and mean directions (lnmean) move.
    /// </summary>
    public static GaugeArch ForBert(BertConfig c)
    {
        int d = c.HiddenSize, f = c.IntermediateSize, H = c.NumAttentionHeads, L = c.NumHiddenLayers;
        var attn = new List<AttnSpec>();
        var writers = new List<MapRef>();
        var mlpIn = new List<MapRef>();
        var mlpOut = new List<MapRef>();
        var post = new List<PostLnSpec>();
        var mean = new List<LnSpec>();
        const string E = "bert.embeddings.";
        string prevGain = E + "LayerNorm.weight", prevBias = E + "LayerNorm.bias", prevName = E + "LayerNorm";
        for (int i = 0; i < L; i++)
        {
            string p = $"bert.encoder.layer.{i}.";
            var qkv = MapRef.Full(p + "attention.self.qkv.weight", p + "attention.self.qkv.bias", WeightLayout.OutIn, d, 3 * d);
            var o = MapRef.Full(p + "attention.output.dense.weight", p + "attention.output.dense.bias", WeightLayout.OutIn, d, d);
            var fc = MapRef.Full(p + "intermediate.dense.weight", p + "intermediate.dense.bias", WeightLayout.OutIn, d, f);
            var proj = MapRef.Full(p + "output.dense.weight", p + "output.dense.bias", WeightLayout.OutIn, f, d);
            attn.Add(new AttnSpec(i, qkv.Sub(0, d), qkv.Sub(d, d), qkv.Sub(2 * d, d), o, H, d / H));
            post.Add(new PostLnSpec(prevName, prevGain, prevBias, [qkv], o));
            string la = p + "attention.output.LayerNorm";
            post.Add(new PostLnSpec(la, la + ".weight", la + ".bias", [fc], proj));
            writers.Add(o);
            writers.Add(proj);
            mlpIn.Add(fc);
            mlpOut.Add(proj);
            prevName = p + "output.LayerNorm"; prevGain = prevName + ".weight"; prevBias = prevName + ".bias";
        }
        if (!c.MlmHead)
        {
            // Encoder-only: the last LayerNorm's output is the observable, so its gain and bias cannot move (nothing is
            // foldable, no head to fold into). A pooler reads that output (at token 0) through a map with a bias, which can
            // take the mean direction the normalised output lacks (lnmean); tanh admits nothing more.
            var pool = c.Pooler ? MapRef.Full("bert.pooler.dense.weight", "bert.pooler.dense.bias", WeightLayout.OutIn, d, d) : null;
            LnSpec[] pooled = pool is null ? [] : [new LnSpec(prevName, prevGain, prevBias, [pool])];
            return new GaugeArch
            {
                Arch = "bert", D = d, Heads = H, Ffn = f, Vocab = c.VocabSize, Positions = c.MaxPositionEmbeddings, Layers = L,
                Eps = c.LayerNormEps, Tied = false, EncoderOnly = true, PreLn = false,
                Attention = [.. attn],
                FoldableLns = [],
                MeanLns = [.. post.Select(x => x.AsLn), .. pooled],
                PostLns = [.. post],
                ResidualReaders = [],
                ResidualWriters = [.. writers],
                MlpIn = [.. mlpIn],
                MlpOut = [.. mlpOut],
                TokenEmbedding = E + "word_embeddings.weight", PositionEmbedding = E + "position_embeddings.weight",
                TypeEmbedding = E + "token_type_embeddings.weight", Types = c.TypeVocabSize,
                FinalLnGain = prevGain, FinalLnBias = prevBias,
            };
        }
        var dense = MapRef.Full("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias", WeightLayout.OutIn, d, d);
        var last = new LnSpec(prevName, prevGain, prevBias, [dense]);
        var output = MapRef.Full(c.TieWordEmbeddings ? E + "word_embeddings.weight" : "cls.predictions.decoder.weight",
            "cls.predictions.bias", WeightLayout.OutIn, d, c.VocabSize);
        const string hl = "cls.predictions.transform.LayerNorm";
        var head = new LnSpec(hl, hl + ".weight", hl + ".bias", [output]);
        LnSpec[] foldable = c.TieWordEmbeddings ? [last] : [last, head];
        return new GaugeArch
        {
            Arch = "bert", D = d, Heads = H, Ffn = f, Vocab = c.VocabSize, Positions = c.MaxPositionEmbeddings, Layers = L,
            Eps = c.LayerNormEps, Tied = c.TieWordEmbeddings, PreLn = false,
            Attention = [.. attn],
            FoldableLns = foldable,
            MeanLns = [.. post.Select(x => x.AsLn), .. foldable],
            PostLns = [.. post],
            ResidualReaders = [],
            ResidualWriters = [.. writers],
            MlpIn = [.. mlpIn],
            MlpOut = [.. mlpOut],
            TokenEmbedding = E + "word_embeddings.weight", PositionEmbedding = E + "position_embeddings.weight",
            TypeEmbedding = E + "token_type_embeddings.weight", Types = c.TypeVocabSize,
            OutputMap = output, FinalLnGain = head.Gain, FinalLnBias = head.Bias,
            Unused = c.Pooler ? ["bert.pooler.dense.weight", "bert.pooler.dense.bias"] : [],
            UnusedCount = c.Pooler ? (long)d * d + d : 0,
        };
    }

    /// <summary>The gauge description of a loaded model.</summary>
    public static GaugeArch For<F>(ILanguageModel<F> model) where F : unmanaged, IFloatingPointIeee754<F> => model switch
    {
        Gpt2<F> g => ForGpt2(g.Config),
        Bert<F> b => ForBert(b.Config),
        _ => throw new InputException($"gauge: architecture '{model.Arch}' is not supported by the gauge toolkit yet"),
    };

    /// <summary>A fresh model of this architecture (zero weights) on the given backend.</summary>
    public ILanguageModel<F> Create<F>(ILanguageModel<double> like, IBackend<F> ops) where F : unmanaged, IFloatingPointIeee754<F> => like switch
    {
        Gpt2<double> g => new Gpt2<F>(g.Config, ops),
        Bert<double> b => new Bert<F>(b.Config, ops),
        _ => throw new InputException($"gauge: architecture '{like.Arch}' is not supported"),
    };

    /// <summary>
    /// Runs the model: BERT with token types and an attention mask (either may be null), GPT-2 on the ids alone.
    /// </summary>
    public static (double LossSum, int Count) Forward<F>(ILanguageModel<F> m, int[] ids, int[]? targets, int B, int T, int[]? types, int[]? mask)
        where F : unmanaged, IFloatingPointIeee754<F> =>
        m is Bert<F> b ? b.Forward(ids, targets, B, T, types, mask) : m.Forward(ids, targets, B, T);

    /// <summary>Total parameters (the tied table counted once).</summary>
    public static int ParameterCount(ParamSet p) => p.Count;
}
