using MathNet.Numerics.LinearAlgebra;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Gauge;

/// <summary>The analytic count of flat directions of one model, per kind.</summary>
public sealed record AnalyticCount(int Parameters, int Analytic, IReadOnlyDictionary<string, int> ByKind, int NearFlat, int Unused);

/// <summary>One kind's generators checked against the Jacobian: how many, the rank they add to the kinds before, the worst ‖J·t‖/(σ_max‖t‖).</summary>
public sealed record GeneratorCheck(string Kind, int Generators, int Rank, double WorstRatio);

/// <summary>The numeric count: the Jacobian's singular values, the cut at the largest gap, and the generator checks.</summary>
public sealed record NumericCount(int Rows, int Parameters, double[] Singular, int Rank, int Null, double GapRatio,
    IReadOnlyList<GeneratorCheck> Generators, int TangentRank, double NearFlatRatio);

/// <summary>
/// Flat directions: the analytic count (from the kinds) and the numeric one, the rank deficiency of the exact
/// Jacobian of the log-softmax outputs (encoder-only: the last hidden state and pooler output) with respect to all
/// parameters (float64), built from backward passes.
/// </summary>
public static class FlatDirections
{
    public static AnalyticCount Analytic(GaugeArch a, int parameters)
    {
        var by = GaugeKind.All.ToDictionary(k => k.Name, k => k.Count(a));
        // Near-flat (exact only at ε = 0): GPT-2 the global scale of the residual stream (1); BERT the scale of the
        // embeddings and of every post-LN LayerNorm's output that the next LayerNorm renormalises (2L + 1).
        return new AnalyticCount(parameters, by.Values.Sum(), by, a.PreLn ? 1 : 1 + a.PostLns.Length, (int)Math.Min(a.UnusedCount, int.MaxValue));
    }

    /// <summary>
    /// Moves a model to a generic point: every one-dimensional parameter (biases, LayerNorm gains and biases) gets
    /// N(0, std²) added, so a fresh init's extra null directions (zero biases, unit gains) are gone; a matrix with RMS
    /// under 0.1 (a fresh N(0, 0.02²) init) gets N(0, 0.3²) added, since at that scale the attention is nearly uniform
    /// and true directions sink to the round-off floor, where no gap separates them from the null ones.
    /// </summary>
    public static string Genericize(ParamSet p, int seed, double std = 0.2)
    {
        var rng = new Random(seed);
        int matrices = 0;
        for (int i = 0; i < p.Data.Length; i++)
        {
            double s = p.Shapes[i].Length == 1 ? std : GroupElements.Rms(p.Data[i]) < 0.1 ? 0.3 : 0;
            if (p.Shapes[i].Length > 1 && s > 0) matrices++;
            if (s > 0) for (int j = 0; j < p.Data[i].Length; j++) p.Data[i][j] += s * GroupElements.Gaussian(rng);
        }
        return $"biases and LayerNorm parameters + N(0, {std}²)" + (matrices > 0 ? $"; {matrices} small-init matrices + N(0, 0.3²)" : "");
    }

    /// <summary>
    /// The exact Jacobian of log p(v | input) with respect to every parameter that reaches the logits (columns: parameters in
    /// model order, <see cref="GaugeArch.Unused"/> left out; rows: random sequences of full context length (BERT: random
    /// token types too) × every position × <paramref name="perPosition"/> distinct random vocabulary entries — many
    /// different inputs matter more than all V rows of one input). Each row is one backward pass: with the only target at
    /// position t set to v, the cross-entropy backward at scale −1 seeds dlogits = onehot(v) − softmax, exactly the
    /// log-softmax Jacobian's row.
    /// </summary>
    public static Matrix<double> Jacobian(ILanguageModel<double> model, int minRows, int seed, int perPosition = 4)
    {
        var a = GaugeArch.For(model);
        var used = model.Parameters.Where(p => !a.Unused.Contains(p.Name)).ToList();
        if (a.EncoderOnly) return EncoderJacobian((Bert<double>)model, a, used, minRows, seed, perPosition);
        int T = a.Positions, V = a.Vocab, P = used.Sum(p => p.Value.Length);
        int k = Math.Min(V, perPosition);
        int sequences = Math.Max(1, (minRows + T * k - 1) / (T * k));
        var rng = new Random(seed);
        var J = Matrix<double>.Build.Dense(sequences * T * k, P);
        var targets = new int[T];
        var vocab = Enumerable.Range(0, V).ToArray();
        int row = 0;
        for (int s = 0; s < sequences; s++)
        {
            var ids = new int[T];
            for (int t = 0; t < T; t++) ids[t] = rng.Next(V);
            int[]? types = null;
            if (a.HasTypes) { types = new int[T]; for (int t = 0; t < T; t++) types[t] = (s + t) % a.Types == 0 ? 0 : rng.Next(a.Types); }
            for (int t = 0; t < T; t++)
            {
                rng.Shuffle(vocab);
                for (int r = 0; r < k; r++)
                {
                    Array.Fill(targets, -100);
                    targets[t] = vocab[r];
                    GaugeArch.Forward(model, ids, targets, 1, T, types, null);
                    foreach (var p in model.Parameters) p.Grad.Clear();
                    model.Backward(-1.0);
                    int col = 0;
                    foreach (var p in used)
                    {
                        var g = p.Grad.Span;
                        for (int c = 0; c < g.Length; c++) J[row, col + c] = g[c];
                        col += g.Length;
                    }
                    row++;
                }
            }
        }
        return J;
    }

    /// <summary>
    /// Encoder-only BERT: the Jacobian of its outputs themselves, the last hidden state h[t, c] (every position t,
    /// <paramref name="perPosition"/> random components c) and every pooler output component, on random sequences of full
    /// context length with random token types. One forward per sequence; each row one backward pass seeded with a unit
    /// gradient at that output.
    /// </summary>
    static Matrix<double> EncoderJacobian(Bert<double> model, GaugeArch a, List<Parameter<double>> used, int minRows, int seed, int perPosition)
    {
        int T = a.Positions, d = a.D, P = used.Sum(p => p.Value.Length);
        int k = Math.Min(d, perPosition);
        bool pooler = model.PoolW is not null;
        int perSequence = T * k + (pooler ? d : 0);
        int sequences = Math.Max(1, (minRows + perSequence - 1) / perSequence);
        var rng = new Random(seed);
        var J = Matrix<double>.Build.Dense(sequences * perSequence, P);
        var hiddenGrad = new Tensor<double>(1, T, d);
        var pooledGrad = new Tensor<double>(1, d);
        var components = Enumerable.Range(0, d).ToArray();
        int row = 0;
        void Row(Tensor<double>? h, Tensor<double>? pooled)
        {
            foreach (var p in model.Parameters) p.Grad.Clear();
            model.Backward(0, pooled, h);
            int col = 0;
            foreach (var p in used)
            {
                var g = p.Grad.Span;
                for (int c = 0; c < g.Length; c++) J[row, col + c] = g[c];
                col += g.Length;
            }
            row++;
        }
        for (int s = 0; s < sequences; s++)
        {
            var ids = new int[T];
            for (int t = 0; t < T; t++) ids[t] = rng.Next(a.Vocab);
            var types = new int[T];
            for (int t = 0; t < T; t++) types[t] = (s + t) % a.Types == 0 ? 0 : rng.Next(a.Types);
            model.Forward(ids, null, 1, T, types, null);
            for (int t = 0; t < T; t++)
            {
                rng.Shuffle(components);
                for (int r = 0; r < k; r++)
                {
                    hiddenGrad.Clear();
                    hiddenGrad.Span[t * d + components[r]] = 1;
                    Row(hiddenGrad, null);
                }
            }
            if (pooler)
                for (int c = 0; c < d; c++)
                {
                    pooledGrad.Clear();
                    pooledGrad.Span[c] = 1;
                    Row(null, pooledGrad);
                }
        }
        return J;
    }

    /// <summary>A tangent vector flattened over the parameters that reach the logits (the Jacobian's columns).</summary>
    public static double[] FlattenUsed(GaugeArch a, ParamSet t)
    {
        if (a.Unused.Length == 0) return t.Flatten();
        var v = new List<double>(t.Count);
        for (int i = 0; i < t.Names.Length; i++) if (!a.Unused.Contains(t.Names[i])) v.AddRange(t.Data[i]);
        return [.. v];
    }

    /// <summary>
    /// The cut at the largest ratio σ_i/σ_{i+1}: the rank is i + 1. Values below 1e-20·σ_max (exact zeros from the
    /// SVD included) are floored there, far below float64 round-off, so a run of zeros does not fake a gap.
    /// </summary>
    public static (int Rank, double Ratio) LargestGap(double[] s)
    {
        int best = s.Length; double ratio = 1;
        double floor = s.Length > 0 ? s[0] * 1e-20 : 0;
        for (int i = 0; i + 1 < s.Length; i++)
        {
            double r = Math.Max(s[i], floor) / Math.Max(s[i + 1], Math.Max(floor, 1e-300));
            if (r > ratio) { ratio = r; best = i + 1; }
        }
        return (best, ratio);
    }

    public static double[] SingularValues(Matrix<double> m) =>
        [.. m.Svd(computeVectors: false).S.Take(Math.Min(m.RowCount, m.ColumnCount)).OrderByDescending(x => x)];

    /// <summary>Full numeric count at the model's current parameters (call <see cref="Genericize"/> first for a fresh init).</summary>
    public static NumericCount Numeric(ILanguageModel<double> model, int seed, double rowsPerParameter = 3)
    {
        var a = GaugeArch.For(model);
        var p = ParamSet.From(model.Parameters);
        int P = p.Count - (int)a.UnusedCount;
        var J = Jacobian(model, (int)Math.Ceiling(rowsPerParameter * P), seed);
        var s = SingularValues(J);
        var (rank, ratio) = LargestGap(s);
        double smax = s[0];

        var checks = new List<GeneratorCheck>();
        var all = new List<double[]>();
        int tangentRank = 0;
        foreach (var kind in GaugeKind.All)
        {
            var ts = kind.Tangents(a, p).Select(t => FlattenUsed(a, t)).ToList();
            all.AddRange(ts);
            double worst = 0;
            foreach (var t in ts) worst = Math.Max(worst, Ratio(J, t, smax));
            // Rank this kind adds to the kinds before it (what its analytic count claims).
            int r = all.Count == 0 ? 0 : TangentRank(all);
            checks.Add(new GeneratorCheck(kind.Name, ts.Count, r - tangentRank, worst));
            tangentRank = r;
        }
        double nearFlat = NearFlatTangents(a, p).Max(t => Ratio(J, FlattenUsed(a, t), smax));
        return new NumericCount(J.RowCount, P, s, rank, P - rank, ratio, checks, tangentRank, nearFlat);
    }

    static double Ratio(Matrix<double> J, double[] t, double smax)
    {
        var v = Vector<double>.Build.DenseOfArray(t);
        return (J * v).L2Norm() / (smax * v.L2Norm());
    }

    /// <summary>Rank of a set of tangent vectors (columns), cut at the largest gap of their singular values.</summary>
    public static int TangentRank(IReadOnlyList<double[]> ts)
    {
        var m = Matrix<double>.Build.Dense(ts[0].Length, ts.Count, (i, j) => ts[j][i]);
        var s = SingularValues(m.ColumnCount > m.RowCount ? m.Transpose() : m);
        if (s.Length == 1 || s[^1] > 1e-10 * s[0]) return s.Length;   // full rank: no gap to cut
        return LargestGap(s).Rank;
    }

    /// <summary>
    /// The near-flat directions (exact only at ε = 0). GPT-2: <see cref="ScaleTangent"/>. BERT (2L + 1): the embeddings
    /// scaled by λ (LN_emb renormalises; tied: the head LayerNorm's gain and bias take 1/λ), and for each LayerNorm feeding a
    /// sublayer and the skip path, its gain and bias scaled by λ, the sublayer's input weights by 1/λ and its output map
    /// (weights and bias) by λ, so the next LayerNorm sees its input scaled by λ.
    /// </summary>
    public static IReadOnlyList<ParamSet> NearFlatTangents(GaugeArch a, ParamSet p)
    {
        if (a.PreLn) return [ScaleTangent(a, p)];
        var list = new List<ParamSet>();
        var t = p.ZerosLike();
        void Copy(ParamSet dst, string name, double x) { var src = p[name]; var d = dst[name]; for (int i = 0; i < src.Length; i++) d[i] += x * src[i]; }
        Copy(t, a.TokenEmbedding, 1); Copy(t, a.PositionEmbedding, 1);
        if (a.TypeEmbedding is not null) Copy(t, a.TypeEmbedding, 1);
        if (a.Tied) { Copy(t, a.FinalLnGain, -1); Copy(t, a.FinalLnBias, -1); }
        list.Add(t);
        foreach (var ln in a.PostLns)
        {
            t = p.ZerosLike();
            Copy(t, ln.Gain, 1); Copy(t, ln.Bias, 1);
            foreach (var r in ln.Readers) for (int i = 0; i < r.In; i++) for (int j = 0; j < r.Cols; j++) r.Add(t, i, j, -r.Get(p, i, j));
            Copy(t, ln.Writer.Weight, 1); Copy(t, ln.Writer.Bias!, 1);
            list.Add(t);
        }
        return list;
    }

    /// <summary>
    /// The near-flat direction (exact only at ε = 0): scale the whole residual stream (embeddings and every residual
    /// writer) by λ; with a tied table the final LayerNorm's gain and bias take 1/λ.
    /// </summary>
    public static ParamSet ScaleTangent(GaugeArch a, ParamSet p)
    {
        var t = p.ZerosLike();
        void Copy(string name) { var src = p[name]; var dst = t[name]; for (int i = 0; i < src.Length; i++) dst[i] += src[i]; }
        Copy(a.TokenEmbedding);
        Copy(a.PositionEmbedding);
        foreach (var w in a.ResidualWriters) { Copy(w.Weight); if (w.Bias is not null) Copy(w.Bias); }
        if (a.Tied)
        {
            var g = p[a.FinalLnGain]; var b = p[a.FinalLnBias];
            for (int i = 0; i < g.Length; i++) { t[a.FinalLnGain][i] = -g[i]; t[a.FinalLnBias][i] = -b[i]; }
        }
        return t;
    }
}
