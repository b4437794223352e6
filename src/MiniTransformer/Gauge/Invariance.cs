using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Models;

namespace MiniTransformer.Gauge;

/// <summary>One kind's invariance check: output deviation after the transformation vs after a same-norm random perturbation.</summary>
public sealed record KindCheck(string Kind, bool Symmetry, double MaxAbs, double MaxRel, double PerturbationRel, double WeightChange);

/// <summary>
/// Invariance checks. Outputs compared are the log-probabilities (log-softmax of the logits): the logits themselves
/// are invariant up to a per-row constant, which the tied-embedding shift and the untied output-map shift use. An
/// encoder-only model has no logits: its outputs, the last hidden state and the pooler output, are compared as they are.
/// Transformations are applied in float64; the two models are then evaluated in the requested precision.
/// </summary>
public static class Invariance
{
    /// <summary>Seeded inputs: B rows of length min(context, <paramref name="length"/>) (every position by default on small models).</summary>
    public static (int[] Ids, int B, int T) RandomInputs(GaugeArch a, int seed, int B = 4, int length = 32)
    {
        int T = Math.Min(a.Positions, length);
        var rng = new Random(seed);
        var ids = new int[B * T];
        for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(a.Vocab);
        return (ids, B, T);
    }

    /// <summary>
    /// BERT's extra inputs for the same batch: random token types (row 0 all type 0, so every type and the default occur)
    /// and an attention mask padding the last key of row 1 (the invariances hold with padding too); null for GPT-2.
    /// </summary>
    public static (int[]? Types, int[]? Mask) RandomExtras(GaugeArch a, int seed, int B, int T)
    {
        if (!a.HasTypes) return (null, null);
        var rng = new Random(seed + 7919);
        var types = new int[B * T];
        for (int b = 1; b < B; b++) for (int t = 0; t < T; t++) types[b * T + t] = rng.Next(a.Types);
        var mask = Enumerable.Repeat(1, B * T).ToArray();
        if (B > 1 && T > 1) mask[T + T - 1] = 0;
        return (types, mask);
    }

    /// <summary>Log-softmax of the logits of <paramref name="p"/> on the inputs, evaluated in precision F.</summary>
    public static double[] LogProbs<F>(ILanguageModel<double> like, GaugeArch a, ParamSet p, IBackend<F> ops, int[] ids, int B, int T,
        int[]? types = null, int[]? mask = null)
        where F : unmanaged, IFloatingPointIeee754<F> => LogProbs(a.Create(like, ops), a, p, ids, B, T, types, mask);

    /// <summary>The same on a model of the architecture that is reused (<paramref name="p"/> is copied into it first).</summary>
    static double[] LogProbs<F>(ILanguageModel<F> m, GaugeArch a, ParamSet p, int[] ids, int B, int T, int[]? types, int[]? mask)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        p.CopyTo(m.Parameters);
        GaugeArch.Forward(m, ids, null, B, T, types, mask);
        var logits = m.Logits.Span;
        int V = a.Vocab;
        var y = new double[B * T * V];
        for (int n = 0; n < B * T; n++)
        {
            double max = double.NegativeInfinity;
            for (int v = 0; v < V; v++) max = Math.Max(max, double.CreateTruncating(logits[n * V + v]));
            double s = 0;
            for (int v = 0; v < V; v++) s += Math.Exp(double.CreateTruncating(logits[n * V + v]) - max);
            double lse = max + Math.Log(s);
            for (int v = 0; v < V; v++) y[n * V + v] = double.CreateTruncating(logits[n * V + v]) - lse;
        }
        return y;
    }

    /// <summary>
    /// The outputs a gauge transformation must keep, evaluated in precision F: the log-probabilities
    /// (<see cref="LogProbs{F}"/>), or for an encoder-only model the last hidden state [B,T,d] followed by the pooler
    /// output [B,d] when there is a pooler.
    /// </summary>
    public static double[] Outputs<F>(ILanguageModel<double> like, GaugeArch a, ParamSet p, IBackend<F> ops, int[] ids, int B, int T,
        int[]? types = null, int[]? mask = null)
        where F : unmanaged, IFloatingPointIeee754<F> => Outputs(a.Create(like, ops), a, p, ids, B, T, types, mask);

    /// <summary>The same on a model of the architecture that is reused (<paramref name="p"/> is copied into it first).</summary>
    public static double[] Outputs<F>(ILanguageModel<F> m, GaugeArch a, ParamSet p, int[] ids, int B, int T, int[]? types = null, int[]? mask = null)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (!a.EncoderOnly) return LogProbs(m, a, p, ids, B, T, types, mask);
        p.CopyTo(m.Parameters);
        GaugeArch.Forward(m, ids, null, B, T, types, mask);
        var bert = (Bert<F>)m;
        var h = bert.Hidden.Span;
        Span<F> pooled = bert.PoolW is null ? Span<F>.Empty : bert.Pooled.Span;
        var y = new double[h.Length + pooled.Length];
        for (int i = 0; i < h.Length; i++) y[i] = double.CreateTruncating(h[i]);
        for (int i = 0; i < pooled.Length; i++) y[h.Length + i] = double.CreateTruncating(pooled[i]);
        return y;
    }

    public static (double MaxAbs, double MaxRel) Deviation(double[] reference, double[] other)
    {
        double maxAbs = 0, scale = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            maxAbs = Math.Max(maxAbs, Math.Abs(other[i] - reference[i]));
            scale = Math.Max(scale, Math.Abs(reference[i]));
        }
        return (maxAbs, maxAbs / Math.Max(scale, double.Epsilon));
    }

    /// <summary>A random (Gaussian) perturbation of every parameter, with the same norm as <paramref name="delta"/>.</summary>
    public static ParamSet SameNormPerturbation(ParamSet p, ParamSet delta, Random rng)
    {
        var pert = p.ZerosLike();
        double norm = 0;
        for (int i = 0; i < p.Data.Length; i++)
            for (int j = 0; j < p.Data[i].Length; j++) { pert.Data[i][j] = GroupElements.Gaussian(rng); norm += pert.Data[i][j] * pert.Data[i][j]; }
        double s = norm > 0 ? delta.Norm() / Math.Sqrt(norm) : 0;
        var q = p.Clone();
        for (int i = 0; i < p.Data.Length; i++)
            for (int j = 0; j < p.Data[i].Length; j++) q.Data[i][j] += s * pert.Data[i][j];
        return q;
    }

    /// <summary>
    /// Applies <paramref name="kind"/> (seeded) to a float64 copy of the model and compares outputs (<see cref="Outputs{F}"/>)
    /// in precision F, on <paramref name="B"/> random rows of min(context, <paramref name="length"/>) tokens.
    /// </summary>
    public static KindCheck Check<F>(ILanguageModel<double> model, GaugeKind kind, int seed, IBackend<F> ops, int B = 4, int length = 32)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var a = GaugeArch.For(model);
        var p0 = ParamSet.From(model.Parameters);
        var p1 = p0.Clone();
        kind.Apply(a, p1, new Random(seed));
        var delta = p1.Minus(p0);
        var p2 = SameNormPerturbation(p0, delta, new Random(seed + 1));
        var (ids, _, T) = RandomInputs(a, seed + 2, B, length);
        var (types, mask) = RandomExtras(a, seed + 2, B, T);
        var m = a.Create(model, ops);   // one evaluation model, loaded with each parameter set in turn
        var y0 = Outputs(m, a, p0, ids, B, T, types, mask);
        var (abs, rel) = Deviation(y0, Outputs(m, a, p1, ids, B, T, types, mask));
        var (_, prel) = Deviation(y0, Outputs(m, a, p2, ids, B, T, types, mask));
        return new KindCheck(kind.Name, kind.IsSymmetry(a, p0), abs, rel, prel, delta.Norm() / Math.Max(p0.Norm(), double.Epsilon));
    }
}
