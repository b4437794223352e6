using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Tensors;

namespace MiniTransformer.Models;

/// <summary>
/// Multi-head self-attention sublayer shared by GPT-2 and BERT:
/// qkv = x·W_qkv + b_qkv (packed [q | k | v]), z = softmax(q·kᵀ/√d_h + mask)·v per head, y = z·W_O + b_O.
/// Causal (GPT-2) or bidirectional with a key padding mask (BERT) is a flag, not a copy.
/// </summary>
public sealed class AttentionBlock<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    readonly IBackend<F> ops;
    readonly int C, NH;
    readonly bool causal;
    readonly WeightLayout layout;
    int B, T;

    public AttentionBlock(IBackend<F> ops, string prefix, int C, int NH, bool causal, WeightLayout layout,
        string qkvName, string projName)
    {
        this.ops = ops; this.C = C; this.NH = NH; this.causal = causal; this.layout = layout;
        Wqkv = new($"{prefix}{qkvName}.weight", layout == WeightLayout.InOut ? new Tensor<F>(C, 3 * C) : new Tensor<F>(3 * C, C));
        Bqkv = new($"{prefix}{qkvName}.bias", new Tensor<F>(3 * C));
        Wo = new($"{prefix}{projName}.weight", new Tensor<F>(C, C));
        Bo = new($"{prefix}{projName}.bias", new Tensor<F>(C));
    }

    public Parameter<F> Wqkv { get; }
    public Parameter<F> Bqkv { get; }
    public Parameter<F> Wo { get; }
    public Parameter<F> Bo { get; }
    public IEnumerable<Parameter<F>> Parameters => [Wqkv, Bqkv, Wo, Bo];
    /// <summary>The backend this block runs on (a <see cref="Projection"/> may dispatch to its own ops).</summary>
    public IBackend<F> Ops => ops;
    /// <summary>An alternative QKV projection (gauge-fixed training's skip kernels); null: x·W_qkv + b_qkv.</summary>
    public IQkvProjection<F>? Projection { get; set; }
    /// <summary>Stochastic symmetry-breaking biases (null: none, the standard block).</summary>
    public AttentionBiases<F>? Biases { get; set; }

    // Saved activations (the analysis surface): qkv [B,T,3C], pattern [B,NH,T,T], z [B,T,C] (heads concatenated), y [B,T,C];
    // for the backward also lse [B,NH,T] and the key mask.
    public Tensor<F> Qkv { get; private set; } = new(0);
    public Tensor<F> Z { get; private set; } = new(0);
    public Tensor<F> Y { get; private set; } = new(0);
    /// <summary>Log-sum-exp of each attention row's scaled scores [B,NH,T] (saved by the forward for the backward).</summary>
    public Tensor<F> Lse { get; private set; } = new(0);
    Tensor<F> dQkv = new(0), dZ = new(0);
    Tensor<F>? pattern;
    bool patternCurrent;
    int[] savedMask = [];

    /// <summary>
    /// The attention probabilities of the last forward [B,NH,T,T]. A backend whose backward does not read them (CUDA)
    /// has the forward skip them, so they are computed here on first access after each forward (the same forward again,
    /// which rewrites z and lse with the same values), and take no memory until first asked for.
    /// </summary>
    public Tensor<F> Pattern
    {
        get
        {
            if (B == 0) return new(0);
            if (patternCurrent) return pattern!;
            pattern ??= new(B, NH, T, T);
            ops.AttentionForward(Z, pattern, Lse, Qkv, savedMask, B, T, C, NH, causal);
            patternCurrent = true;
            return pattern;
        }
    }

    void Ensure(int b, int t)
    {
        if (b == B && t == T) return;
        B = b; T = t;
        Qkv = new(B, T, 3 * C); Z = new(B, T, C); Y = new(B, T, C); Lse = new(B, NH, T);
        pattern = null; patternCurrent = false;
        dQkv = new(B, T, 3 * C); dZ = new(B, T, C);
    }

    public Tensor<F> Forward(Tensor<F> x, ReadOnlySpan<int> keyMask, int b, int t)
    {
        Ensure(b, t);
        int N = B * T;
        if (Projection is null) ops.MatmulForward(Qkv, x, Wqkv.Value, Bqkv.Value, N, C, 3 * C, layout);
        else Projection.Forward(Qkv, x, N);   // gauge-fixed: identity blocks skipped
        Biases?.Apply(ops, Qkv, N, C, NH);   // symmetry breaking: q ← q + b_Q, v ← v + b_V (unlearned; backward unchanged)
        if (savedMask.Length != keyMask.Length) savedMask = new int[keyMask.Length];
        keyMask.CopyTo(savedMask);   // for the backward (and a later pattern)
        // The pattern only where the backward reads it; else Pattern computes it on demand.
        patternCurrent = ops.AttentionBackwardReadsPattern;
        if (patternCurrent) pattern ??= new(B, NH, T, T);
        ops.AttentionForward(Z, patternCurrent ? pattern : null, Lse, Qkv, keyMask, B, T, C, NH, causal);
        ops.MatmulForward(Y, Z, Wo.Value, Bo.Value, N, C, C, layout);
        return Y;
    }

    /// <summary>The queries (part 0), keys (1) or values (2) of the last forward as [B,T,C] (heads contiguous), copied out of the packed qkv.</summary>
    public F[] Part(int part)
    {
        var d = new F[B * T * C];
        for (int n = 0; n < B * T; n++)
            Array.Copy(Qkv.Data, n * 3 * C + part * C, d, n * C, C);
        return d;
    }

    /// <summary>dY → parameter grads, and dx += ∂/∂x.</summary>
    public void Backward(Tensor<F> dY, Tensor<F> x, Tensor<F> dx)
    {
        int N = B * T;
        dZ.Clear(); dQkv.Clear();
        ops.MatmulBackward(dZ, Wo.Grad, Bo.Grad, dY, Z, Wo.Value, N, C, C, layout);
        ops.AttentionBackward(dQkv, dZ, Qkv, Z, ops.AttentionBackwardReadsPattern ? Pattern : null, Lse, savedMask, B, T, C, NH, causal);
        if (Projection is null) ops.MatmulBackward(dx, Wqkv.Grad, Bqkv.Grad, dQkv, x, Wqkv.Value, N, C, 3 * C, layout);
        else Projection.Backward(dx, dQkv, x, N);
    }
}

/// <summary>MLP sublayer shared by GPT-2 and BERT: y = gelu(x·W_fc + b_fc)·W_proj + b_proj.</summary>
public sealed class MlpBlock<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    readonly IBackend<F> ops;
    readonly int C, Ffn;
    readonly GeluForm gelu;
    readonly WeightLayout layout;
    int N = -1;

    public MlpBlock(IBackend<F> ops, string prefix, int C, int ffn, GeluForm gelu, WeightLayout layout,
        string fcName, string projName, bool prelu = false)
    {
        this.ops = ops; this.C = C; Ffn = ffn; this.gelu = gelu; this.layout = layout;
        // PReLU (symmetry-breaking option): learnable per-feature negative slopes, the engine's own tensor name.
        if (prelu) Slopes = new($"{prefix}act.weight", new Tensor<F>(ffn));
        Wfc = new($"{prefix}{fcName}.weight", layout == WeightLayout.InOut ? new Tensor<F>(C, ffn) : new Tensor<F>(ffn, C));
        Bfc = new($"{prefix}{fcName}.bias", new Tensor<F>(ffn));
        Wproj = new($"{prefix}{projName}.weight", layout == WeightLayout.InOut ? new Tensor<F>(ffn, C) : new Tensor<F>(C, ffn));
        Bproj = new($"{prefix}{projName}.bias", new Tensor<F>(C));
    }

    public Parameter<F> Wfc { get; }
    public Parameter<F> Bfc { get; }
    public Parameter<F> Wproj { get; }
    public Parameter<F> Bproj { get; }
    public IEnumerable<Parameter<F>> Parameters => Slopes is null ? [Wfc, Bfc, Wproj, Bproj] : [Wfc, Bfc, Slopes, Wproj, Bproj];
    /// <summary>PReLU negative slopes [F] when the MLP uses PReLU instead of GELU; else null.</summary>
    public Parameter<F>? Slopes { get; }

    // Saved activations: pre-activation h [N,F], post-activation gelu(h) [N,F], output y [N,C].
    public Tensor<F> Pre { get; private set; } = new(0);
    public Tensor<F> Post { get; private set; } = new(0);
    public Tensor<F> Y { get; private set; } = new(0);
    Tensor<F> dPre = new(0), dPost = new(0);

    public Tensor<F> Forward(Tensor<F> x, int n)
    {
        if (n != N)
        {
            N = n;
            Pre = new(N, Ffn); Post = new(N, Ffn); Y = new(N, C); dPre = new(N, Ffn); dPost = new(N, Ffn);
        }
        if (Slopes is not null)
        {
            ops.MatmulForward(Pre, x, Wfc.Value, Bfc.Value, N, C, Ffn, layout);
            ops.PreluForward(Post, Pre, Slopes.Value, N, Ffn);
        }
        else ops.MatmulGeluForward(Pre, Post, x, Wfc.Value, Bfc.Value, N, C, Ffn, layout, gelu);   // gelu in the epilogue
        ops.MatmulForward(Y, Post, Wproj.Value, Bproj.Value, N, Ffn, C, layout);
        return Y;
    }

    public void Backward(Tensor<F> dY, Tensor<F> x, Tensor<F> dx)
    {
        dPost.Clear(); dPre.Clear();
        ops.MatmulBackward(dPost, Wproj.Grad, Bproj.Grad, dY, Post, Wproj.Value, N, Ffn, C, layout);
        if (Slopes is not null) ops.PreluBackward(dPre, Slopes.Grad, dPost, Pre, Slopes.Value, N, Ffn);
        else ops.GeluBackward(dPre, dPost, Pre, N * Ffn, gelu);
        ops.MatmulBackward(dx, Wfc.Grad, Bfc.Grad, dPre, x, Wfc.Value, N, C, Ffn, layout);
    }
}

/// <summary>LayerNorm parameters with the per-row statistics and output of the last forward.</summary>
public sealed class LayerNormBlock<F>(IBackend<F> ops, string name, int C, double eps) where F : unmanaged, IFloatingPointIeee754<F>
{
    int N = -1;
    public Parameter<F> Gamma { get; } = new($"{name}.weight", Filled(C, F.One));
    public Parameter<F> Beta { get; } = new($"{name}.bias", new Tensor<F>(C));
    public IEnumerable<Parameter<F>> Parameters => [Gamma, Beta];
    public Tensor<F> Y { get; private set; } = new(0);
    Tensor<F> mean = new(0), rstd = new(0);

    static Tensor<F> Filled(int n, F v) { var t = new Tensor<F>(n); t.Span.Fill(v); return t; }

    public Tensor<F> Forward(Tensor<F> x, int n)
    {
        if (n != N) { N = n; Y = new(N, C); mean = new(N); rstd = new(N); }
        ops.LayerNormForward(Y, mean, rstd, x, Gamma.Value, Beta.Value, N, C, eps);
        return Y;
    }

    /// <summary>resid = a + b, then Y = LN(resid), in one pass over the rows.</summary>
    public Tensor<F> ForwardResidual(Tensor<F> resid, Tensor<F> a, Tensor<F> b, int n)
    {
        if (n != N) { N = n; Y = new(N, C); mean = new(N); rstd = new(N); }
        ops.ResidualLayerNormForward(resid, Y, mean, rstd, a, b, Gamma.Value, Beta.Value, N, C, eps);
        return Y;
    }

    public void Backward(Tensor<F> dY, Tensor<F> x, Tensor<F> dx) =>
        ops.LayerNormBackward(dx, Gamma.Grad, Beta.Grad, dY, x, Gamma.Value, mean, rstd, N, C);
}

/// <summary>Checks of a model's integer inputs shared by GPT-2 and BERT; each failure is an <see cref="InputException"/> naming the entry.</summary>
public static class ModelInputs
{
    /// <summary>B, T positive, T within the context (<paramref name="context"/> names it in the message), ids in [0, V), targets in [0, V) or −100.</summary>
    public static void Check(int[] ids, int[]? targets, int B, int T, int V, int maxT, string context)
    {
        if (B <= 0 || T <= 0) throw new InputException($"batch and sequence length must be positive (got B={B}, T={T})");
        if (T > maxT) throw new InputException($"sequence length {T} exceeds the model's {context}={maxT}");
        InRange("input_ids", ids, B, T, V, "is outside the vocabulary", allowIgnore: false);
        if (targets is not null) InRange("targets", targets, B, T, V, "is outside the vocabulary", allowIgnore: true);
    }

    /// <summary>values [B,T] each in [0, n) (or −100 when allowed).</summary>
    public static void InRange(string name, int[] values, int B, int T, int n, string what, bool allowIgnore)
    {
        if (values.Length != B * T) throw new InputException($"{name} has {values.Length} entries, expected B·T = {B * T}");
        for (int i = 0; i < values.Length; i++)
            if ((uint)values[i] >= (uint)n && !(allowIgnore && values[i] == -100))
                throw new InputException($"{name}[{i / T}, {i % T}] = {values[i]} {what} [0, {n}){(allowIgnore ? " and is not -100" : "")}");
    }
}
