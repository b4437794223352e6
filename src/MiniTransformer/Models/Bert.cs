using System.Numerics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MiniTransformer.Backends;
using MiniTransformer.Tensors;

namespace MiniTransformer.Models;

/// <summary>
/// BERT with its masked-language-model head (post-LN, learned positions + token types, gelu-erf, bidirectional
/// attention with a key padding mask), over the same op set and the same blocks as GPT-2:
/// <code>
///   x₀ = LN_emb(wte[ids] + wpe[pos] + wtt[types])
///   for each layer:  x ← LN_attn(x + Attn(x, mask));  x ← LN_out(x + MLP(x))        (post-LN)
///   h = x;  pooled = tanh(h[:,0]·W_poolᵀ + b_pool)                                  (when a pooler is present)
///   logits = LN_head(gelu(h·W_tᵀ + b_t))·wteᵀ + cls.predictions.bias;  loss = mean CE over targets ≠ −100
/// </code>
/// Parameters carry Hugging Face names (<c>bert.</c> prefix; Linear weights [out, in]) except that each layer's
/// query, key and value are held packed as <c>...attention.self.qkv.*</c> ([q | k | v] rows, the layout of
/// nn.MultiheadAttention's in_proj); <see cref="IO.ModelFiles"/> splits and joins them. Without the MLM head
/// (<see cref="BertConfig.MlmHead"/> false: an encoder-only checkpoint such as a sentence encoder) the forward stops at
/// the hidden states (and the pooler), there are no logits and no loss, and the head's members throw.
/// </summary>
public sealed class Bert<F> : ILanguageModel<F>, IStochasticForward where F : unmanaged, IFloatingPointIeee754<F>
{
    public sealed class Layer(IBackend<F> ops, BertConfig c, int i)
    {
        const string P = "bert.encoder.layer.";
        public AttentionBlock<F> Attn { get; } = new(ops, $"{P}{i}.attention.", c.HiddenSize, c.NumAttentionHeads,
            causal: false, WeightLayout.OutIn, "self.qkv", "output.dense");
        public LayerNormBlock<F> LnAttn { get; } = new(ops, $"{P}{i}.attention.output.LayerNorm", c.HiddenSize, c.LayerNormEps);
        public MlpBlock<F> Mlp { get; } = new(ops, $"{P}{i}.", c.HiddenSize, c.IntermediateSize, c.Gelu, WeightLayout.OutIn,
            "intermediate.dense", "output.dense", prelu: c.MlpActivation == MlpActivation.Prelu);
        public LayerNormBlock<F> LnOut { get; } = new(ops, $"{P}{i}.output.LayerNorm", c.HiddenSize, c.LayerNormEps);
        public IEnumerable<Parameter<F>> Parameters => [.. Attn.Parameters, .. LnAttn.Parameters, .. Mlp.Parameters, .. LnOut.Parameters];
        /// <summary>x + Attn(x) before LN_attn, and LN_attn(·) + MLP(·) before LN_out.</summary>
        public Tensor<F> SumAttn { get; internal set; } = new(0);
        public Tensor<F> SumMlp { get; internal set; } = new(0);
        /// <summary>The layer's output (LN_out's).</summary>
        public Tensor<F> Output => LnOut.Y;
    }

    readonly IBackend<F> ops;
    readonly List<Parameter<F>> parameters;
    int B = -1, T = -1;
    int[] ids = [], targets = [], types = [];
    bool hasTargets;

    public Bert(BertConfig config, IBackend<F> ops)
    {
        config.Validate("BERT config");
        Config = config;
        this.ops = ops;
        int C = config.HiddenSize, V = config.VocabSize;
        Wte = new("bert.embeddings.word_embeddings.weight", new Tensor<F>(V, C));
        Wpe = new("bert.embeddings.position_embeddings.weight", new Tensor<F>(config.MaxPositionEmbeddings, C));
        Wtt = new("bert.embeddings.token_type_embeddings.weight", new Tensor<F>(config.TypeVocabSize, C));
        LnEmb = new(ops, "bert.embeddings.LayerNorm", C, config.LayerNormEps);
        Layers = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(i => new Layer(ops, config, i))];
        // Symmetry breaking (arXiv 2601.22257): unlearned stochastic b_Q / b_V after the projections, as in GPT-2.
        if (config.SymmetryBreaking is { Any: true } sb)
            for (int i = 0; i < Layers.Count; i++) Layers[i].Attn.Biases = new AttentionBiases<F>(sb, Mode, i);
        if (config.Pooler)
        {
            PoolW = new("bert.pooler.dense.weight", new Tensor<F>(C, C));
            PoolB = new("bert.pooler.dense.bias", new Tensor<F>(C));
        }
        parameters = [Wte, Wpe, Wtt, .. LnEmb.Parameters, .. Layers.SelectMany(l => l.Parameters)];
        if (PoolW is not null) parameters.AddRange([PoolW, PoolB!]);
        if (!config.MlmHead) return;
        headW = new("cls.predictions.transform.dense.weight", new Tensor<F>(C, C));
        headB = new("cls.predictions.transform.dense.bias", new Tensor<F>(C));
        lnHead = new(ops, "cls.predictions.transform.LayerNorm", C, config.LayerNormEps);
        Decoder = config.TieWordEmbeddings ? null : new Parameter<F>("cls.predictions.decoder.weight", new Tensor<F>(V, C));
        decoderBias = new("cls.predictions.bias", new Tensor<F>(V));
        parameters.AddRange([headW, headB, .. lnHead.Parameters]);
        if (Decoder is not null) parameters.Add(Decoder);
        parameters.Add(decoderBias);
    }

    readonly Parameter<F>? headW, headB, decoderBias;
    readonly LayerNormBlock<F>? lnHead;
    static InvalidOperationException NoHead() => new("this BERT is encoder-only: it has no MLM head (cls.predictions.*)");

    public BertConfig Config { get; }
    public string Arch => "bert";
    public int VocabSize => Config.VocabSize;
    public int MaxSequence => Config.MaxPositionEmbeddings;
    public string ConfigJson => Config.ToJson();
    public string Describe() =>
        $"BERT L={Config.NumHiddenLayers} H={Config.NumAttentionHeads} d={Config.HiddenSize} MLP={Config.IntermediateSize} " +
        $"V={Config.VocabSize} ctx={Config.MaxPositionEmbeddings} types={Config.TypeVocabSize}{(Config.Pooler ? " +pooler" : "")}" +
        (!Config.MlmHead ? " encoder-only" : Config.TieWordEmbeddings ? "" : " untied");
    public IReadOnlyList<Parameter<F>> Parameters => parameters;
    /// <summary>Train/eval mode of the stochastic symmetry-breaking biases (eval, i.e. their means, unless the trainer says otherwise).</summary>
    public ForwardMode Mode { get; } = new();
    public void SetForwardMode(bool training, int seed, long forwardIndex) { Mode.Training = training; Mode.Seed = seed; Mode.Index = forwardIndex; }

    public Parameter<F> Wte { get; }
    public Parameter<F> Wpe { get; }
    public Parameter<F> Wtt { get; }
    public LayerNormBlock<F> LnEmb { get; }
    public IReadOnlyList<Layer> Layers { get; }
    public Parameter<F>? PoolW { get; }
    public Parameter<F>? PoolB { get; }
    /// <summary>Whether the model has the MLM head (false: encoder-only, no logits).</summary>
    public bool HasMlmHead => Config.MlmHead;
    public Parameter<F> HeadW => headW ?? throw NoHead();
    public Parameter<F> HeadB => headB ?? throw NoHead();
    public LayerNormBlock<F> LnHead => lnHead ?? throw NoHead();
    public Parameter<F>? Decoder { get; }
    public Parameter<F> DecoderBias => decoderBias ?? throw NoHead();
    /// <summary>The MLM output map [V, d]: the word embeddings when tied.</summary>
    public Parameter<F> OutputMap => HasMlmHead ? Decoder ?? Wte : throw NoHead();

    // Activations of the last forward.
    public Tensor<F> Embedded { get; private set; } = new(0);     // word + position + type, before LN_emb [B,T,C]
    public Tensor<F> Hidden => Layers.Count > 0 ? Layers[^1].Output : LnEmb.Y;   // last encoder layer [B,T,C]
    public Tensor<F> Pooled { get; private set; } = new(0);       // [B,C] (pooler only)
    public Tensor<F> HeadPre { get; private set; } = new(0);      // transform dense output [B,T,C]
    public Tensor<F> HeadAct { get; private set; } = new(0);      // gelu of it [B,T,C]
    public Tensor<F> Logits { get; private set; } = new(0);       // [B,T,V]
    Tensor<F> first = new(0), lse = new(0);
    Tensor<F> dLogits = new(0), dA = new(0), dB = new(0), dC = new(0), dFirst = new(0), dPooled = new(0);

    /// <summary>Hugging Face's BERT initialisation: N(0, 0.02) for matrices and embeddings, biases 0, LayerNorm (1, 0).</summary>
    public void InitializeRandom(int seed)
    {
        var rng = new Random(seed);
        foreach (var p in parameters)
        {
            if (!p.Decays) continue;   // biases and LayerNorms keep their constructor values (0 and 1)
            var d = p.Value.Span;
            for (int i = 0; i < d.Length; i++) d[i] = F.CreateTruncating(0.02 * Gpt2<F>.Gaussian(rng));
        }
        // PReLU slopes ~ N(0.2, 1.0), drawn after everything else so GELU models are unchanged (as in GPT-2).
        foreach (var l in Layers)
            if (l.Mlp.Slopes is { } a)
                for (int i = 0; i < a.Value.Length; i++) a.Value.Span[i] = F.CreateTruncating(0.2 + 1.0 * Gpt2<F>.Gaussian(rng));
    }

    void Ensure(int b, int t)
    {
        if (b == B && t == T) return;
        B = b; T = t;
        int N = B * T, C = Config.HiddenSize, V = Config.VocabSize;
        Embedded = new(B, T, C);
        foreach (var l in Layers) { l.SumAttn = new(B, T, C); l.SumMlp = new(B, T, C); }
        if (HasMlmHead) { HeadPre = new(B, T, C); HeadAct = new(B, T, C); Logits = new(B, T, V); }
        lse = new(N);
        first = new(B, C); Pooled = new(B, C);
        dLogits = new(0); dA = new(0); dB = new(0); dC = new(0); dFirst = new(0); dPooled = new(0);  // by the first backward
    }

    public (double LossSum, int Count) Forward(int[] ids, int[]? targets, int B, int T) => Forward(ids, targets, B, T, null, null);

    /// <summary>
    /// Forward with optional token types [B,T] (default 0) and attention mask [B,T] (1 keep, 0 pad: padded keys get no
    /// attention; padded positions still have outputs, as in Hugging Face, and are normally given target −100).
    /// </summary>
    public (double LossSum, int Count) Forward(int[] ids, int[]? targets, int B, int T, int[]? tokenTypes, int[]? attentionMask)
    {
        Check(ids, targets, tokenTypes, attentionMask, B, T);
        if (targets is not null && !HasMlmHead)
            throw new InputException("targets given, but this BERT is encoder-only (no MLM head to score them): remove the targets");
        Ensure(B, T);
        this.ids = ids;
        types = tokenTypes ?? [];
        int N = B * T, C = Config.HiddenSize, V = Config.VocabSize;

        ops.EmbeddingForward(Embedded, ids, types, Wte.Value, Wpe.Value, Wtt.Value, B, T, C);
        var x = LnEmb.Forward(Embedded, N);
        foreach (var l in Layers)
        {
            var a = l.Attn.Forward(x, attentionMask ?? default, B, T);
            ops.ResidualForward(l.SumAttn, x, a, N * C);
            var h = l.LnAttn.Forward(l.SumAttn, N);
            var m = l.Mlp.Forward(h, N);
            ops.ResidualForward(l.SumMlp, h, m, N * C);
            x = l.LnOut.Forward(l.SumMlp, N);
        }
        if (PoolW is not null) PoolerForward(x);
        hasTargets = false;
        if (!HasMlmHead) return (0, 0);

        ops.MatmulForward(HeadPre, x, HeadW.Value, HeadB.Value, N, C, C, WeightLayout.OutIn);
        ops.GeluForward(HeadAct, HeadPre, N * C, Config.Gelu);
        var t = LnHead.Forward(HeadAct, N);
        ops.MatmulForward(Logits, t, OutputMap.Value, DecoderBias.Value, N, C, V, WeightLayout.OutIn);

        hasTargets = targets is not null;
        if (targets is null) return (0, 0);
        this.targets = targets;
        return ops.CrossEntropyForward(lse, Logits, targets, N, V);
    }

    void PoolerForward(Tensor<F> h)
    {
        int C = Config.HiddenSize;
        for (int b = 0; b < B; b++) h.Data.AsSpan(b * T * C, C).CopyTo(first.Data.AsSpan(b * C, C));
        ops.MatmulForward(Pooled, first, PoolW!.Value, PoolB!.Value, B, C, C, WeightLayout.OutIn);
        // tanh on B·C values (the op set has no tanh op; this is the only use).
        TensorPrimitives.Tanh<F>(Pooled.Span, Pooled.Span);
    }

    public void Backward(double scale) => Backward(scale, null);

    /// <summary>
    /// Accumulates ∂(scale·Σ MLM loss + Σ pooledGrad ⊙ pooled + Σ hiddenGrad ⊙ h)/∂θ: the MLM loss of the last forward
    /// (which needs targets unless <paramref name="scale"/> is 0), plus, when given, a gradient [B, d] arriving at the
    /// pooler output and a gradient [B, T, d] arriving at the last hidden state h.
    /// </summary>
    public void Backward(double scale, Tensor<F>? pooledGrad, Tensor<F>? hiddenGrad = null)
    {
        if (!hasTargets && scale != 0) throw new InvalidOperationException("Backward needs a forward with targets");
        if (pooledGrad is not null && PoolW is null) throw new InvalidOperationException("this BERT has no pooler");
        int N = B * T, C = Config.HiddenSize, V = Config.VocabSize;
        if (dA.Length != N * C) { dLogits = HasMlmHead ? new(N, V) : new(0); dA = new(N, C); dB = new(N, C); dC = new(N, C); dFirst = new(B, C); dPooled = new(B, C); }

        // ∂L/∂h (the last encoder layer) gathers into dA: MLM head first, then the pooler.
        dA.Clear();
        if (hasTargets && scale != 0)
        {
            ops.CrossEntropyBackward(dLogits, Logits, lse, targets, N, V, scale);
            dB.Clear();
            ops.MatmulBackward(dB, OutputMap.Grad, DecoderBias.Grad, dLogits, LnHead.Y, OutputMap.Value, N, C, V, WeightLayout.OutIn);
            dC.Clear();
            LnHead.Backward(dB, HeadAct, dC);
            dB.Clear();
            ops.GeluBackward(dB, dC, HeadPre, N * C, Config.Gelu);
            ops.MatmulBackward(dA, HeadW.Grad, HeadB.Grad, dB, Hidden, HeadW.Value, N, C, C, WeightLayout.OutIn);
        }
        if (pooledGrad is not null) PoolerBackward(pooledGrad, dA);
        if (hiddenGrad is not null)
        {
            if (hiddenGrad.Length != N * C) throw new ArgumentException($"hidden-state gradient has {hiddenGrad.Length} entries, expected B·T·d = {N * C}");
            TensorPrimitives.Add<F>(dA.Span, hiddenGrad.Span, dA.Span);
        }

        // Post-LN: x_out = LN_out(h + MLP(h)), h = LN_attn(x + Attn(x)). Going down, dA holds ∂L/∂(layer output);
        // each residual sum splits its gradient into the sublayer and the skip path (ResidualBackward).
        for (int i = Layers.Count - 1; i >= 0; i--)
        {
            var l = Layers[i];
            var xIn = i > 0 ? Layers[i - 1].Output : LnEmb.Y;
            dB.Clear();
            l.LnOut.Backward(dA, l.SumMlp, dB);                 // dB = ∂L/∂(h + MLP(h))
            dA.Clear(); dC.Clear();
            ops.ResidualBackward(dA, dC, dB, N * C);            // dA = skip part, dC = ∂L/∂MLP(h)
            l.Mlp.Backward(dC, l.LnAttn.Y, dA);                 // dA = ∂L/∂h
            dB.Clear();
            l.LnAttn.Backward(dA, l.SumAttn, dB);               // dB = ∂L/∂(x + Attn(x))
            dA.Clear(); dC.Clear();
            ops.ResidualBackward(dA, dC, dB, N * C);
            l.Attn.Backward(dC, xIn, dA);                       // dA = ∂L/∂x
        }
        dB.Clear();
        LnEmb.Backward(dA, Embedded, dB);
        ops.EmbeddingBackward(Wte.Grad, Wpe.Grad, Wtt.Grad, dB, ids, types, B, T, C);
    }

    /// <summary>pooled = tanh(u), u = first·Wᵀ + b: du = dpooled·(1 − pooled²); dh[:,0] += du·W.</summary>
    void PoolerBackward(Tensor<F> pooledGrad, Tensor<F> dHidden)
    {
        int C = Config.HiddenSize;
        if (pooledGrad.Length != B * C) throw new ArgumentException($"pooled gradient has {pooledGrad.Length} entries, expected B·d = {B * C}");
        var y = Pooled.Span;
        var g = pooledGrad.Span;
        var du = dPooled.Span;
        for (int n = 0; n < du.Length; n++) du[n] = g[n] * (F.One - y[n] * y[n]);
        dFirst.Clear();
        ops.MatmulBackward(dFirst, PoolW!.Grad, PoolB!.Grad, dPooled, first, PoolW.Value, B, C, C, WeightLayout.OutIn);
        for (int b = 0; b < B; b++)
        {
            var dst = dHidden.Data.AsSpan(b * T * C, C);
            TensorPrimitives.Add<F>(dst, dFirst.Data.AsSpan(b * C, C), dst);
        }
    }

    void Check(int[] ids, int[]? targets, int[]? tokenTypes, int[]? mask, int B, int T)
    {
        ModelInputs.Check(ids, targets, B, T, Config.VocabSize, Config.MaxPositionEmbeddings, "max_position_embeddings");
        if (tokenTypes is not null) ModelInputs.InRange("token_type_ids", tokenTypes, B, T, Config.TypeVocabSize, "is outside type_vocab_size", allowIgnore: false);
        if (mask is not null) ModelInputs.InRange("attention_mask", mask, B, T, 2, "(1 keep, 0 pad) is outside", allowIgnore: false);
    }

    /// <summary>
    /// Every named intermediate activation of the last forward, shapes [B,T,...]: <c>embed</c> (before LN),
    /// <c>embed.ln</c>; per layer <c>layer.{i}.attn.q/k/v</c> [B,T,H,d_h], <c>.attn.pattern</c> [B,H,T,T], <c>.attn.z</c>,
    /// <c>.attn.out</c>, <c>.attn.sum</c> (x + attn), <c>.attn.ln</c>, <c>.mlp.pre</c>, <c>.mlp.post</c> [B,T,F],
    /// <c>.mlp.out</c>, <c>.mlp.sum</c>, <c>.out</c> (the layer's output); then <c>pooled</c> [B,d] (with a pooler),
    /// <c>head.pre</c>, <c>head.gelu</c>, <c>head.ln</c>.
    /// </summary>
    public IEnumerable<(string Name, F[] Data, int[] Shape)> Activations()
    {
        int C = Config.HiddenSize, H = Config.NumAttentionHeads, hs = Config.HeadDim, Fd = Config.IntermediateSize;
        yield return ("embed", Embedded.Data, [B, T, C]);
        yield return ("embed.ln", LnEmb.Y.Data, [B, T, C]);
        for (int i = 0; i < Layers.Count; i++)
        {
            var l = Layers[i];
            string p = $"layer.{i}.";
            for (int part = 0; part < 3; part++)
                yield return (p + "attn." + "qkv"[part], l.Attn.Part(part), [B, T, H, hs]);
            yield return (p + "attn.pattern", l.Attn.Pattern.Data, [B, H, T, T]);
            yield return (p + "attn.z", l.Attn.Z.Data, [B, T, C]);
            yield return (p + "attn.out", l.Attn.Y.Data, [B, T, C]);
            yield return (p + "attn.sum", l.SumAttn.Data, [B, T, C]);
            yield return (p + "attn.ln", l.LnAttn.Y.Data, [B, T, C]);
            yield return (p + "mlp.pre", l.Mlp.Pre.Data, [B, T, Fd]);
            yield return (p + "mlp.post", l.Mlp.Post.Data, [B, T, Fd]);
            yield return (p + "mlp.out", l.Mlp.Y.Data, [B, T, C]);
            yield return (p + "mlp.sum", l.SumMlp.Data, [B, T, C]);
            yield return (p + "out", l.Output.Data, [B, T, C]);
        }
        if (PoolW is not null) yield return ("pooled", Pooled.Data, [B, C]);
        if (!HasMlmHead) yield break;
        yield return ("head.pre", HeadPre.Data, [B, T, C]);
        yield return ("head.gelu", HeadAct.Data, [B, T, C]);
        yield return ("head.ln", LnHead.Y.Data, [B, T, C]);
    }
}
