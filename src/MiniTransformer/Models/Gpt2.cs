using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Tensors;

namespace MiniTransformer.Models;

/// <summary>
/// GPT-2 (pre-LN, learned positions, gelu-tanh, causal), written over the op set like llm.c's train_gpt2.c:
/// <code>
///   x₀ = wte[ids] + wpe[pos]
///   for each layer:  x ← x + Attn(LN₁(x));  x ← x + MLP(LN₂(x))
///   h = LN_f(x);  logits = h·wteᵀ (tied) or h·lm_headᵀ;  loss = mean CE over targets ≠ −100
/// </code>
/// Parameters carry Hugging Face names and layouts (Conv1D weights [in, out]).
/// </summary>
public sealed class Gpt2<F> : ILanguageModel<F>, IStochasticForward where F : unmanaged, IFloatingPointIeee754<F>
{
    public sealed class Layer(IBackend<F> ops, Gpt2Config c, int i)
    {
        public LayerNormBlock<F> Ln1 { get; } = new(ops, $"h.{i}.ln_1", c.NEmbd, c.LayerNormEpsilon);
        public AttentionBlock<F> Attn { get; } = new(ops, $"h.{i}.attn.", c.NEmbd, c.NHead, causal: true, WeightLayout.InOut, "c_attn", "c_proj");
        public LayerNormBlock<F> Ln2 { get; } = new(ops, $"h.{i}.ln_2", c.NEmbd, c.LayerNormEpsilon);
        public MlpBlock<F> Mlp { get; } = new(ops, $"h.{i}.mlp.", c.NEmbd, c.Ffn, GeluForm.Tanh, WeightLayout.InOut, "c_fc", "c_proj",
            prelu: c.MlpActivation == MlpActivation.Prelu);
        public IEnumerable<Parameter<F>> Parameters => [.. Ln1.Parameters, .. Attn.Parameters, .. Ln2.Parameters, .. Mlp.Parameters];
        // Residual stream after the attention and after the MLP sublayer.
        public Tensor<F> ResidMid { get; internal set; } = new(0);
        public Tensor<F> ResidPost { get; internal set; } = new(0);
    }

    readonly IBackend<F> ops;
    readonly List<Parameter<F>> parameters;
    int B = -1, T = -1;
    int[] ids = [], targets = [];
    bool hasTargets;

    public Gpt2(Gpt2Config config, IBackend<F> ops)
    {
        Config = config;
        this.ops = ops;
        int C = config.NEmbd;
        Wte = new("wte.weight", new Tensor<F>(config.VocabSize, C));
        Wpe = new("wpe.weight", new Tensor<F>(config.NPositions, C));
        Layers = [.. Enumerable.Range(0, config.NLayer).Select(i => new Layer(ops, config, i))];
        if (config.SymmetryBreaking is { Any: true } sb)
            for (int i = 0; i < Layers.Count; i++) Layers[i].Attn.Biases = new AttentionBiases<F>(sb, Mode, i);
        LnF = new(ops, "ln_f", C, config.LayerNormEpsilon);
        LmHead = config.TieWordEmbeddings ? null : new Parameter<F>("lm_head.weight", new Tensor<F>(config.VocabSize, C));
        parameters = [Wte, Wpe, .. Layers.SelectMany(l => l.Parameters), .. LnF.Parameters];
        if (LmHead is not null) parameters.Add(LmHead);
    }

    public Gpt2Config Config { get; }
    public string Arch => "gpt2";
    public int VocabSize => Config.VocabSize;
    public int MaxSequence => Config.NPositions;
    public string ConfigJson => Config.ToJson();
    public string Describe() =>
        $"GPT-2 L={Config.NLayer} H={Config.NHead} d={Config.NEmbd} MLP={Config.Ffn} V={Config.VocabSize} ctx={Config.NPositions}{(Config.TieWordEmbeddings ? "" : " untied")}";
    public IReadOnlyList<Parameter<F>> Parameters => parameters;
    /// <summary>Train/eval mode of the stochastic symmetry-breaking biases (eval, i.e. their means, unless the trainer says otherwise).</summary>
    public ForwardMode Mode { get; } = new();
    public void SetForwardMode(bool training, int seed, long forwardIndex) { Mode.Training = training; Mode.Seed = seed; Mode.Index = forwardIndex; }

    public Parameter<F> Wte { get; }
    public Parameter<F> Wpe { get; }
    public IReadOnlyList<Layer> Layers { get; }
    public LayerNormBlock<F> LnF { get; }
    public Parameter<F>? LmHead { get; }
    /// <summary>The output map [V, d]: the token table when tied.</summary>
    public Parameter<F> OutputMap => LmHead ?? Wte;

    // Activations of the last forward.
    public Tensor<F> Embedded { get; private set; } = new(0);   // x₀ [B,T,C]
    public Tensor<F> Logits { get; private set; } = new(0);     // [B,T,V]
    public Tensor<F> Hidden => LnF.Y;                            // final hidden state, after ln_f
    Tensor<F> lse = new(0), dLogits = new(0), dRes = new(0), dLn = new(0);

    /// <summary>GPT-2 initialisation: N(0, 0.02), residual projections N(0, 0.02/√(2L)), biases 0, LayerNorm (1, 0).</summary>
    public void InitializeRandom(int seed)
    {
        var rng = new Random(seed);
        double projStd = 0.02 / Math.Sqrt(2.0 * Math.Max(1, Config.NLayer));
        foreach (var p in parameters)
        {
            if (!p.Decays) continue;   // biases and LayerNorms keep their constructor values (0 and 1)
            double std = p.Name.EndsWith("c_proj.weight", StringComparison.Ordinal) ? projStd : 0.02;
            var d = p.Value.Span;
            for (int i = 0; i < d.Length; i++) d[i] = F.CreateTruncating(std * Gaussian(rng));
        }
        // PReLU slopes ~ N(0.2, 1.0) (the paper's RandomPReLU1d), drawn after everything else so GELU models are unchanged.
        foreach (var l in Layers)
            if (l.Mlp.Slopes is { } a)
                for (int i = 0; i < a.Value.Length; i++) a.Value.Span[i] = F.CreateTruncating(0.2 + 1.0 * Gaussian(rng));
    }

    internal static double Gaussian(Random rng)
    {
        // Box–Muller; deterministic for a given Random.
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    void Ensure(int b, int t)
    {
        if (b == B && t == T) return;
        B = b; T = t;
        int N = B * T, C = Config.NEmbd, V = Config.VocabSize;
        Embedded = new(B, T, C);
        foreach (var l in Layers) { l.ResidMid = new(B, T, C); l.ResidPost = new(B, T, C); }
        Logits = new(B, T, V);
        lse = new(N);
        dLogits = new(0); dRes = new(0); dLn = new(0);   // allocated by the first backward
    }

    public (double LossSum, int Count) Forward(int[] ids, int[]? targets, int B, int T) => Forward(ids, targets, B, T, null);

    /// <summary>Forward with an optional key padding mask [B,T] (1 keep, 0 pad) on top of the causal mask.</summary>
    public (double LossSum, int Count) Forward(int[] ids, int[]? targets, int B, int T, int[]? keyMask)
    {
        Check(ids, targets, B, T);
        if (keyMask is not null && keyMask.Length != B * T)
            throw new InputException($"attention_mask has {keyMask.Length} entries, expected B·T = {B * T}");
        Ensure(B, T);
        this.ids = ids;
        int N = B * T, C = Config.NEmbd, V = Config.VocabSize;

        ops.EmbeddingForward(Embedded, ids, default, Wte.Value, Wpe.Value, null, B, T, C);
        // Each residual add is fused with the LayerNorm that reads its result: x ← x + f(·) and LN(x) in one pass.
        var h = Layers.Count > 0 ? Layers[0].Ln1.Forward(Embedded, N) : LnF.Forward(Embedded, N);
        for (int i = 0; i < Layers.Count; i++)
        {
            var l = Layers[i];
            var xIn = i > 0 ? Layers[i - 1].ResidPost : Embedded;
            var a = l.Attn.Forward(h, keyMask, B, T);
            var m = l.Mlp.Forward(l.Ln2.ForwardResidual(l.ResidMid, xIn, a, N), N);
            h = (i + 1 < Layers.Count ? Layers[i + 1].Ln1 : LnF).ForwardResidual(l.ResidPost, l.ResidMid, m, N);
        }
        ops.MatmulForward(Logits, h, OutputMap.Value, null, N, C, V, WeightLayout.OutIn);

        hasTargets = targets is not null;
        if (targets is null) return (0, 0);
        this.targets = targets;
        return ops.CrossEntropyForward(lse, Logits, targets, N, V);
    }

    public void Backward(double scale)
    {
        if (!hasTargets) throw new InvalidOperationException("Backward needs a forward with targets");
        int N = B * T, C = Config.NEmbd, V = Config.VocabSize;
        if (dRes.Length != N * C) { dLogits = new(N, V); dRes = new(N, C); dLn = new(N, C); }

        ops.CrossEntropyBackward(dLogits, Logits, lse, targets, N, V, scale);
        dLn.Clear();
        ops.MatmulBackward(dLn, OutputMap.Grad, null, dLogits, LnF.Y, OutputMap.Value, N, C, V, WeightLayout.OutIn);
        var xLast = Layers.Count > 0 ? Layers[^1].ResidPost : Embedded;
        dRes.Clear();
        LnF.Backward(dLn, xLast, dRes);

        // One buffer dRes carries ∂L/∂(residual stream) down the layers: a residual connection passes the gradient
        // through unchanged, so each sublayer's input gradient is simply added into it (x ← x + f(LN(x))).
        for (int i = Layers.Count - 1; i >= 0; i--)
        {
            var l = Layers[i];
            var xIn = i > 0 ? Layers[i - 1].ResidPost : Embedded;
            dLn.Clear();
            l.Mlp.Backward(dRes, l.Ln2.Y, dLn);
            l.Ln2.Backward(dLn, l.ResidMid, dRes);
            dLn.Clear();
            l.Attn.Backward(dRes, l.Ln1.Y, dLn);
            l.Ln1.Backward(dLn, xIn, dRes);
        }
        ops.EmbeddingBackward(Wte.Grad, Wpe.Grad, null, dRes, ids, default, B, T, C);
    }

    void Check(int[] ids, int[]? targets, int B, int T) =>
        ModelInputs.Check(ids, targets, B, T, Config.VocabSize, Config.NPositions, "context n_positions");

    /// <summary>
    /// Every named intermediate activation of the last forward (the analysis surface), with shapes [B,T,...]:
    /// <c>embed</c>; per layer <c>h.{i}.resid_pre</c>, <c>.ln_1</c>, <c>.attn.q/k/v</c> [B,T,H,d_h], <c>.attn.pattern</c>
    /// [B,H,T,T], <c>.attn.z</c> (heads concatenated, before c_proj), <c>.attn.out</c>, <c>.resid_mid</c>, <c>.ln_2</c>,
    /// <c>.mlp.pre</c>, <c>.mlp.post</c> [B,T,F], <c>.mlp.out</c>, <c>.resid_post</c>; then <c>ln_f</c>.
    /// </summary>
    public IEnumerable<(string Name, F[] Data, int[] Shape)> Activations()
    {
        int C = Config.NEmbd, H = Config.NHead, hs = Config.HeadDim, Fd = Config.Ffn;
        yield return ("embed", Embedded.Data, [B, T, C]);
        for (int i = 0; i < Layers.Count; i++)
        {
            var l = Layers[i];
            string p = $"h.{i}.";
            yield return (p + "resid_pre", (i == 0 ? Embedded : Layers[i - 1].ResidPost).Data, [B, T, C]);
            yield return (p + "ln_1", l.Ln1.Y.Data, [B, T, C]);
            for (int part = 0; part < 3; part++)
                yield return (p + "attn." + "qkv"[part], l.Attn.Part(part), [B, T, H, hs]);
            yield return (p + "attn.pattern", l.Attn.Pattern.Data, [B, H, T, T]);
            yield return (p + "attn.z", l.Attn.Z.Data, [B, T, C]);
            yield return (p + "attn.out", l.Attn.Y.Data, [B, T, C]);
            yield return (p + "resid_mid", l.ResidMid.Data, [B, T, C]);
            yield return (p + "ln_2", l.Ln2.Y.Data, [B, T, C]);
            yield return (p + "mlp.pre", l.Mlp.Pre.Data, [B, T, Fd]);
            yield return (p + "mlp.post", l.Mlp.Post.Data, [B, T, Fd]);
            yield return (p + "mlp.out", l.Mlp.Y.Data, [B, T, C]);
            yield return (p + "resid_post", l.ResidPost.Data, [B, T, C]);
        }
        yield return ("ln_f", LnF.Y.Data, [B, T, C]);
    }
}
