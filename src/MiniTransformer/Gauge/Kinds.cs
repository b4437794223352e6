using static MiniTransformer.Gauge.GroupElements;

namespace MiniTransformer.Gauge;

/// <summary>
/// One family of function-preserving transformations (a `--kinds` name). Each kind can
/// <list type="bullet">
/// <item>apply a random finite group element (seeded, well conditioned) to a float64 <see cref="ParamSet"/>;</item>
/// <item>list exact tangent vectors of its orbit at the current point (a spanning set of its Lie algebra's image);</item>
/// <item>say how many independent flat directions it contributes (the analytic count).</item>
/// </list>
/// Notation: a linear map is y = x·W + c with W as [in, out] (see <see cref="MapRef"/>), 1 the all-ones vector.
/// </summary>
public abstract class GaugeKind
{
    public abstract string Name { get; }
    public abstract string Description { get; }
    /// <summary>
    /// Independent flat directions this kind adds to those of the kinds before it in <see cref="All"/>'s order (so the
    /// counts add up to the total).
    /// </summary>
    public abstract int Count(GaugeArch a);
    /// <summary>Whether the transformation is an exact symmetry of this model (the residual rotation of a tied GPT-2 is not).</summary>
    public virtual bool IsSymmetry(GaugeArch a, ParamSet p) => true;
    /// <summary>Whether the kind exists in this architecture at all (postln only in post-LN models, residual only in pre-LN ones).</summary>
    public virtual bool Applies(GaugeArch a) => true;
    public abstract void Apply(GaugeArch a, ParamSet p, Random rng);
    public abstract IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p);

    public static readonly IReadOnlyList<GaugeKind> All =
        [new QkKind(), new KBiasKind(), new OvKind(), new VBiasKind(), new LnGainKind(), new LnBiasKind(), new LnMeanKind(),
         new Writer1Kind(), new EmbShiftKind(), new PostLnKind(), new ResidualKind(), new MlpPermutationKind()];

    public static IReadOnlyList<GaugeKind> Parse(string? list)
    {
        if (string.IsNullOrWhiteSpace(list) || list == "all") return All;
        var kinds = new List<GaugeKind>();
        foreach (var raw in list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var k = All.FirstOrDefault(x => x.Name == raw)
                ?? throw new InputException($"--kinds: unknown kind '{raw}'; expected some of {string.Join(",", All.Select(x => x.Name))}");
            if (!kinds.Contains(k)) kinds.Add(k);
        }
        return kinds;
    }

    // ---------------------------------------------------------------- shared pieces

    /// <summary>Each row r of the block (and its bias) → r·M; written into dst (set) or added to it.</summary>
    protected static void MapCols(ParamSet src, ParamSet dst, MapRef m, double[,] M, bool add)
    {
        int n = m.Cols;
        var row = new double[n];
        for (int i = 0; i <= m.In; i++)
        {
            bool bias = i == m.In;
            if (bias && !m.HasBias) break;
            for (int j = 0; j < n; j++) row[j] = bias ? m.GetBias(src, j) : m.Get(src, i, j);
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++) s += row[k] * M[k, j];
                if (bias) { if (add) m.AddBias(dst, j, s); else m.SetBias(dst, j, s); }
                else { if (add) m.Add(dst, i, j, s); else m.Set(dst, i, j, s); }
            }
        }
    }

    /// <summary>The rows [row0, row0 + k) of the block → M·rows (M is k×k); bias untouched.</summary>
    protected static void MapRows(ParamSet src, ParamSet dst, MapRef m, int row0, double[,] M, bool add)
    {
        int k = M.GetLength(0);
        var col = new double[k];
        for (int j = 0; j < m.Cols; j++)
        {
            for (int r = 0; r < k; r++) col[r] = m.Get(src, row0 + r, j);
            for (int r = 0; r < k; r++)
            {
                double s = 0;
                for (int q = 0; q < k; q++) s += M[r, q] * col[q];
                if (add) m.Add(dst, row0 + r, j, s); else m.Set(dst, row0 + r, j, s);
            }
        }
    }

    protected static double[] Row(ParamSet p, MapRef m, int i)
    {
        var r = new double[m.Cols];
        for (int j = 0; j < m.Cols; j++) r[j] = m.Get(p, i, j);
        return r;
    }

    /// <summary>x·W over the block: Σ_i x_i W[i, :].</summary>
    protected static double[] VecTimes(ParamSet p, MapRef m, double[] x)
    {
        var y = new double[m.Cols];
        for (int i = 0; i < m.In; i++)
            if (x[i] != 0) for (int j = 0; j < m.Cols; j++) y[j] += x[i] * m.Get(p, i, j);
        return y;
    }

    protected static double Dot(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += a[i] * b[i]; return s; }

    /// <summary>Scale for additive shifts: half the RMS of the tensor they move (at least 0.05).</summary>
    protected static double ShiftScale(ParamSet p, string name) => 0.5 * Math.Max(Rms(p[name]), 0.1);

    protected static IEnumerable<int> Range(int n) => Enumerable.Range(0, n);
}

/// <summary>qk: per layer and head, A ∈ GL(d_h): W_Q→W_Q·A, b_Q→b_Q·A, W_K→W_K·A⁻ᵀ, b_K→b_K·A⁻ᵀ.</summary>
public sealed class QkKind : GaugeKind
{
    public override string Name => "qk";
    public override string Description => "per head A ∈ GL(d_h): W̃_Q→W̃_Q·A, W̃_K→W̃_K·A⁻ᵀ (q·kᵀ unchanged)";
    public override int Count(GaugeArch a) => a.Attention.Sum(s => s.Heads * s.HeadDim * s.HeadDim);
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var s in a.Attention)
            for (int h = 0; h < s.Heads; h++)
            {
                var (A, inv) = WellConditioned(s.HeadDim, rng);
                MapCols(p, p, s.Q.Sub(h * s.HeadDim, s.HeadDim), A, add: false);
                MapCols(p, p, s.K.Sub(h * s.HeadDim, s.HeadDim), Transpose(inv), add: false);
            }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var s in a.Attention)
            for (int h = 0; h < s.Heads; h++)
                for (int i = 0; i < s.HeadDim; i++)
                    for (int j = 0; j < s.HeadDim; j++)
                    {
                        var t = p.ZerosLike();
                        MapCols(p, t, s.Q.Sub(h * s.HeadDim, s.HeadDim), Unit(s.HeadDim, i, j), add: true);
                        MapCols(p, t, s.K.Sub(h * s.HeadDim, s.HeadDim), Scale(Unit(s.HeadDim, j, i), -1), add: true);
                        yield return t;
                    }
    }
}

/// <summary>kbias: b_K → b_K + c (a per-query constant added to the scores; the softmax ignores it).</summary>
public sealed class KBiasKind : GaugeKind
{
    public override string Name => "kbias";
    public override string Description => "b_K → b_K + c (per-query constant in the scores)";
    public override int Count(GaugeArch a) => a.Attention.Sum(s => s.K.Cols);
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var s in a.Attention)
        {
            var c = GaussianVector(s.K.Cols, ShiftScale(p, s.K.Bias!), rng);
            for (int j = 0; j < c.Length; j++) s.K.AddBias(p, j, c[j]);
        }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var s in a.Attention)
            for (int j = 0; j < s.K.Cols; j++) { var t = p.ZerosLike(); s.K.AddBias(t, j, 1); yield return t; }
    }
}

/// <summary>ov: per head B ∈ GL(d_h): W_V→W_V·B, b_V→b_V·B, W_O^h → B⁻¹·W_O^h.</summary>
public sealed class OvKind : GaugeKind
{
    public override string Name => "ov";
    public override string Description => "per head B ∈ GL(d_h): W̃_V→W̃_V·B, W_O^h→B⁻¹·W_O^h";
    public override int Count(GaugeArch a) => a.Attention.Sum(s => s.Heads * s.HeadDim * s.HeadDim);
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var s in a.Attention)
            for (int h = 0; h < s.Heads; h++)
            {
                var (B, inv) = WellConditioned(s.HeadDim, rng);
                MapCols(p, p, s.V.Sub(h * s.HeadDim, s.HeadDim), B, add: false);
                MapRows(p, p, s.O, h * s.HeadDim, inv, add: false);
            }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var s in a.Attention)
            for (int h = 0; h < s.Heads; h++)
                for (int i = 0; i < s.HeadDim; i++)
                    for (int j = 0; j < s.HeadDim; j++)
                    {
                        var t = p.ZerosLike();
                        MapCols(p, t, s.V.Sub(h * s.HeadDim, s.HeadDim), Unit(s.HeadDim, i, j), add: true);
                        MapRows(p, t, s.O, h * s.HeadDim, Scale(Unit(s.HeadDim, i, j), -1), add: true);
                        yield return t;
                    }
    }
}

/// <summary>vbias: b_V → b_V + c, b_O → b_O − c·W_O (attention weights sum to one).</summary>
public sealed class VBiasKind : GaugeKind
{
    public override string Name => "vbias";
    public override string Description => "b_V → b_V + c, b_O → b_O − c·W_O (attention rows sum to one)";
    public override int Count(GaugeArch a) => a.Attention.Sum(s => s.V.Cols);
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var s in a.Attention)
        {
            var c = GaussianVector(s.V.Cols, ShiftScale(p, s.V.Bias!), rng);
            var shift = VecTimes(p, s.O, c);
            for (int j = 0; j < s.O.Cols; j++) s.O.AddBias(p, j, -shift[j]);
            for (int j = 0; j < c.Length; j++) s.V.AddBias(p, j, c[j]);
        }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var s in a.Attention)
            for (int i = 0; i < s.V.Cols; i++)
            {
                var t = p.ZerosLike();
                s.V.AddBias(t, i, 1);
                var r = Row(p, s.O, i);
                for (int j = 0; j < r.Length; j++) s.O.AddBias(t, j, -r[j]);
                yield return t;
            }
    }
}

/// <summary>lngain: g→g⊙k, b→b⊙k, every map W it feeds → diag(k)⁻¹·W.</summary>
public sealed class LnGainKind : GaugeKind
{
    public override string Name => "lngain";
    public override string Description => "LayerNorm → linear maps: g→g⊙k, b→b⊙k, W→diag(k)⁻¹·W";
    public override int Count(GaugeArch a) => a.FoldableLns.Length * a.D;
    /// <summary>An encoder-only BERT has no foldable LayerNorm (its last one is the output).</summary>
    public override bool Applies(GaugeArch a) => a.FoldableLns.Length > 0;
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var ln in a.FoldableLns)
        {
            var k = Scales(a.D, rng);
            var g = p[ln.Gain]; var b = p[ln.Bias];
            for (int i = 0; i < a.D; i++) { g[i] *= k[i]; b[i] *= k[i]; }
            foreach (var r in ln.Readers)
                for (int i = 0; i < a.D; i++)
                    for (int j = 0; j < r.Cols; j++) r.Set(p, i, j, r.Get(p, i, j) / k[i]);
        }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var ln in a.FoldableLns)
            for (int i = 0; i < a.D; i++)
            {
                var t = p.ZerosLike();
                t[ln.Gain][i] = p[ln.Gain][i];
                t[ln.Bias][i] = p[ln.Bias][i];
                foreach (var r in ln.Readers)
                    for (int j = 0; j < r.Cols; j++) r.Add(t, i, j, -r.Get(p, i, j));
                yield return t;
            }
    }
}

/// <summary>
/// lnbias: b→b+δ, c→c−δ·W. A bias-free map (GPT-2's untied lm_head) absorbs the constant through its mean
/// direction instead: W → W + outer(1/g, u) with u = −δ·W / ((b+δ)·(1/g)) (needs (b+δ)·(1/g) ≠ 0, true at a generic point).
/// </summary>
public sealed class LnBiasKind : GaugeKind
{
    public override string Name => "lnbias";
    public override string Description => "LayerNorm → linear maps: b→b+δ, c→c−δ·W (bias-free map: through its mean direction)";
    public override int Count(GaugeArch a) => a.FoldableLns.Length * a.D;
    public override bool Applies(GaugeArch a) => a.FoldableLns.Length > 0;
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var ln in a.FoldableLns)
        {
            var delta = GaussianVector(a.D, ShiftScale(p, ln.Bias), rng);
            var g = p[ln.Gain]; var b = p[ln.Bias];
            var bNew = b.Select((x, i) => x + delta[i]).ToArray();
            double bOverG = bNew.Select((x, i) => x / g[i]).Sum();
            foreach (var r in ln.Readers)
            {
                var shift = VecTimes(p, r, delta);
                if (r.HasBias) for (int j = 0; j < r.Cols; j++) r.AddBias(p, j, -shift[j]);
                else
                    for (int i = 0; i < a.D; i++)
                        for (int j = 0; j < r.Cols; j++) r.Add(p, i, j, -shift[j] / bOverG / g[i]);
            }
            bNew.CopyTo(b, 0);
        }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var ln in a.FoldableLns)
        {
            var g = p[ln.Gain]; var b = p[ln.Bias];
            double bOverG = b.Select((x, i) => x / g[i]).Sum();
            for (int k = 0; k < a.D; k++)
            {
                var t = p.ZerosLike();
                t[ln.Bias][k] = 1;
                foreach (var r in ln.Readers)
                {
                    var row = Row(p, r, k);
                    if (r.HasBias) for (int j = 0; j < r.Cols; j++) r.AddBias(t, j, -row[j]);
                    else
                        for (int i = 0; i < a.D; i++)
                            for (int j = 0; j < r.Cols; j++) r.Add(t, i, j, -row[j] / bOverG / g[i]);
                }
                yield return t;
            }
        }
    }
}

/// <summary>
/// lnmean: W → W + outer(1/g, u), c → c − (b·(1/g))·u (the normalised output is orthogonal to 1); maps with a bias. Acts on
/// <see cref="GaugeArch.MeanLns"/>: in a post-LN model also on LayerNorms that feed a skip path (the skip path sees no reader).
/// </summary>
public sealed class LnMeanKind : GaugeKind
{
    public override string Name => "lnmean";
    public override string Description => "LayerNorm → linear map with bias: W→W+outer(1/g,u), c→c−(b·(1/g))·u";
    public override int Count(GaugeArch a) => a.MeanLns.Sum(ln => ln.Readers.Where(r => r.HasBias).Sum(r => r.Cols));
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var ln in a.MeanLns)
        {
            var g = p[ln.Gain]; var b = p[ln.Bias];
            double bOverG = b.Select((x, i) => x / g[i]).Sum();
            foreach (var r in ln.Readers.Where(r => r.HasBias))
            {
                var u = GaussianVector(r.Cols, 0.5 * Math.Max(Rms(p[r.Weight]), 0.1) * GainScale(g), rng);
                for (int i = 0; i < a.D; i++) for (int j = 0; j < r.Cols; j++) r.Add(p, i, j, u[j] / g[i]);
                for (int j = 0; j < r.Cols; j++) r.AddBias(p, j, -bOverG * u[j]);
            }
        }
    }
    /// <summary>
    /// The scale u is drawn at, so that W moves by about half its RMS: Rms(g); a LayerNorm with dead units (|g_i| under
    /// 1e-3·Rms(g): the real MiniLM's last LayerNorm has gains of 5e-33) takes min|g_i|, or 1/g would move W by ~10³⁰.
    /// </summary>
    static double GainScale(double[] g)
    {
        double rms = Rms(g), min = g.Min(Math.Abs);
        return min < 1e-3 * rms ? min : rms;
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var ln in a.MeanLns)
        {
            var g = p[ln.Gain]; var b = p[ln.Bias];
            double bOverG = b.Select((x, i) => x / g[i]).Sum();
            foreach (var r in ln.Readers.Where(r => r.HasBias))
                for (int j = 0; j < r.Cols; j++)
                {
                    var t = p.ZerosLike();
                    for (int i = 0; i < a.D; i++) r.Add(t, i, j, 1 / g[i]);
                    r.AddBias(t, j, -bOverG);
                    yield return t;
                }
        }
    }
}

/// <summary>
/// writer1: components along 1 that the next normaliser removes: every residual writer W → W + outer(w, 1),
/// c → c + s·1 (the next LayerNorm removes them); an untied output map W → W + outer(w, 1_V) (the log-softmax removes them).
/// </summary>
public sealed class Writer1Kind : GaugeKind
{
    public override string Name => "writer1";
    public override string Description => "residual writers W→W+outer(w,1), c→c+s·1; untied output map W→W+outer(w,1_V)";
    /// <remarks>
    /// An untied output map with a bias (untied BERT's decoder) read by a LayerNorm in lnmean: lnmean's u = 1_V is
    /// outer(1/g, 1_V) plus a bias shift along 1_V, i.e. already in writer1; subtracted once.
    /// With a single head (d_h = d) one direction is already in ov + vbias + lnmean: W_O is square, so ov's
    /// X = −outer(w, z) with z·W_O = 1 and w = W_V⁻¹·(1/g) moves W_O by outer(w, 1), W_V along ln_1's mean direction
    /// and b_V along z (vbias turns that into b_O + s·1). It is subtracted here, once per such attention block.
    /// </remarks>
    public override int Count(GaugeArch a) =>
        a.ResidualWriters.Sum(w => w.In + (w.HasBias ? 1 : 0)) + (a.HasUntiedOutputMap ? a.OutputMap.In + (a.OutputMap.HasBias ? 1 : 0) : 0)
        - a.Attention.Count(s => s.Heads == 1)
        - (a.HasUntiedOutputMap && a.OutputMap.HasBias && a.MeanLns.Any(ln => ln.Readers.Contains(a.OutputMap)) ? 1 : 0);
    IEnumerable<MapRef> Maps(GaugeArch a) => a.HasUntiedOutputMap ? [.. a.ResidualWriters, a.OutputMap] : a.ResidualWriters;
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var m in Maps(a))
        {
            var w = GaussianVector(m.In, ShiftScale(p, m.Weight), rng);
            for (int i = 0; i < m.In; i++) for (int j = 0; j < m.Cols; j++) m.Add(p, i, j, w[i]);
            if (m.HasBias)
            {
                double s = ShiftScale(p, m.Bias!) * Gaussian(rng);
                for (int j = 0; j < m.Cols; j++) m.AddBias(p, j, s);
            }
        }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var m in Maps(a))
        {
            for (int i = 0; i < m.In; i++)
            {
                var t = p.ZerosLike();
                for (int j = 0; j < m.Cols; j++) m.Add(t, i, j, 1);
                yield return t;
            }
            if (m.HasBias)
            {
                var t = p.ZerosLike();
                for (int j = 0; j < m.Cols; j++) m.AddBias(t, j, 1);
                yield return t;
            }
        }
    }
}

/// <summary>
/// embshift: E → E + outer(1_V, w) with P → P − outer(1_T, w) (their sum unchanged; tied: the logits shift by a
/// per-row constant); P → P + outer(p, 1) (the first LayerNorm removes it); untied (or encoder-only) only: E → E + outer(e, 1).
/// BERT's token-type table S likewise: S → S + outer(1_S, w′) with P → P − outer(1_T, w′), and S → S + outer(s, 1).
/// Counted: d per table beyond the first, one 1-component per table that is not the output map, less the shifts along
/// 1 between two tables that both have 1-components (already in their span).
/// </summary>
public sealed class EmbShiftKind : GaugeKind
{
    public override string Name => "embshift";
    public override string Description => "E→E+outer(1,w), P→P−outer(1,w); P→P+outer(p,1); untied E→E+outer(e,1); BERT's S likewise";
    public override int Count(GaugeArch a) =>
        (a.Tied ? a.D + a.Positions : a.Vocab + a.Positions + a.D - 1) + (a.HasTypes ? a.D + a.Types - 1 : 0);
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        var E = p[a.TokenEmbedding]; var P = p[a.PositionEmbedding];
        int d = a.D;
        var w = GaussianVector(d, ShiftScale(p, a.TokenEmbedding), rng);
        var pos = GaussianVector(a.Positions, ShiftScale(p, a.PositionEmbedding), rng);
        for (int v = 0; v < a.Vocab; v++) for (int i = 0; i < d; i++) E[v * d + i] += w[i];
        for (int t = 0; t < a.Positions; t++) for (int i = 0; i < d; i++) P[t * d + i] += pos[t] - w[i];
        if (!a.Tied)
        {
            var e = GaussianVector(a.Vocab, ShiftScale(p, a.TokenEmbedding), rng);
            for (int v = 0; v < a.Vocab; v++) for (int i = 0; i < d; i++) E[v * d + i] += e[v];
        }
        if (a.HasTypes)
        {
            var S = p[a.TypeEmbedding!];
            var w2 = GaussianVector(d, ShiftScale(p, a.TypeEmbedding!), rng);
            var ty = GaussianVector(a.Types, ShiftScale(p, a.TypeEmbedding!), rng);
            for (int s = 0; s < a.Types; s++) for (int i = 0; i < d; i++) S[s * d + i] += w2[i] + ty[s];
            for (int t = 0; t < a.Positions; t++) for (int i = 0; i < d; i++) P[t * d + i] -= w2[i];
        }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        int d = a.D;
        for (int i = 0; i < d; i++)
        {
            var t = p.ZerosLike();
            var E = t[a.TokenEmbedding]; var P = t[a.PositionEmbedding];
            for (int v = 0; v < a.Vocab; v++) E[v * d + i] = 1;
            for (int s = 0; s < a.Positions; s++) P[s * d + i] = -1;
            yield return t;
        }
        for (int s = 0; s < a.Positions; s++)
        {
            var t = p.ZerosLike();
            for (int i = 0; i < d; i++) t[a.PositionEmbedding][s * d + i] = 1;
            yield return t;
        }
        if (!a.Tied)
            for (int v = 0; v < a.Vocab; v++)
            {
                var t = p.ZerosLike();
                for (int i = 0; i < d; i++) t[a.TokenEmbedding][v * d + i] = 1;
                yield return t;
            }
        if (a.HasTypes)
        {
            for (int i = 0; i < d; i++)
            {
                var t = p.ZerosLike();
                var S = t[a.TypeEmbedding!]; var P = t[a.PositionEmbedding];
                for (int s = 0; s < a.Types; s++) S[s * d + i] = 1;
                for (int s = 0; s < a.Positions; s++) P[s * d + i] = -1;
                yield return t;
            }
            for (int s = 0; s < a.Types; s++)
            {
                var t = p.ZerosLike();
                for (int i = 0; i < d; i++) t[a.TypeEmbedding!][s * d + i] = 1;
                yield return t;
            }
        }
    }
}

/// <summary>
/// postln (post-LN models only): a LayerNorm that feeds a sublayer and the skip path, with its bias moved by δ, is
/// compensated by the sublayer's input biases (c → c − δ·W) and its output bias (b_O → b_O − δ), so x + Sublayer(x)
/// is unchanged; tied BERT's head LayerNorm bias into the decoder bias (b → b + δ, b_dec → b_dec − δ·Eᵀ); the decoder
/// bias's shift along 1_V (the log-softmax ignores it). (Untied, the last two are lnbias and writer1.)
/// </summary>
public sealed class PostLnKind : GaugeKind
{
    public override string Name => "postln";
    public override string Description => "post-LN: LN bias b→b+δ, sublayer input biases −δ·W, output bias −δ; head LN bias → decoder bias; decoder bias + s·1";
    static bool HeadFold(GaugeArch a) => !a.PreLn && a.Tied && a.OutputMap.HasBias;
    public override bool Applies(GaugeArch a) => Count(a) > 0;
    public override int Count(GaugeArch a) => a.PostLns.Length * a.D + (HeadFold(a) ? a.D + 1 : 0);
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        foreach (var ln in a.PostLns)
        {
            var delta = GaussianVector(a.D, ShiftScale(p, ln.Bias), rng);
            Shift(a, p, ln, delta, 1);
        }
        if (HeadFold(a))
        {
            var delta = GaussianVector(a.D, ShiftScale(p, a.FinalLnBias), rng);
            var shift = VecTimes(p, a.OutputMap, delta);
            for (int j = 0; j < a.OutputMap.Cols; j++) a.OutputMap.AddBias(p, j, -shift[j]);
            for (int i = 0; i < a.D; i++) p[a.FinalLnBias][i] += delta[i];
            double s = ShiftScale(p, a.OutputMap.Bias!) * Gaussian(rng);
            for (int j = 0; j < a.OutputMap.Cols; j++) a.OutputMap.AddBias(p, j, s);
        }
    }

    /// <summary>b → b + x·δ with its compensation (written into dst, reading the weights from src).</summary>
    static void Shift(GaugeArch a, ParamSet src, PostLnSpec ln, double[] delta, double x, ParamSet? dst = null)
    {
        dst ??= src;
        foreach (var r in ln.Readers)
        {
            var shift = VecTimes(src, r, delta);
            for (int j = 0; j < r.Cols; j++) r.AddBias(dst, j, -x * shift[j]);
        }
        for (int j = 0; j < ln.Writer.Cols; j++) ln.Writer.AddBias(dst, j, -x * delta[j]);
        for (int i = 0; i < a.D; i++) dst[ln.Bias][i] += x * delta[i];
    }

    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        foreach (var ln in a.PostLns)
            for (int k = 0; k < a.D; k++)
            {
                var t = p.ZerosLike();
                var e = new double[a.D]; e[k] = 1;
                Shift(a, p, ln, e, 1, t);
                yield return t;
            }
        if (HeadFold(a))
        {
            for (int k = 0; k < a.D; k++)
            {
                var t = p.ZerosLike();
                t[a.FinalLnBias][k] = 1;
                var row = Row(p, a.OutputMap, k);
                for (int j = 0; j < row.Length; j++) a.OutputMap.AddBias(t, j, -row[j]);
                yield return t;
            }
            var u = p.ZerosLike();
            for (int j = 0; j < a.OutputMap.Cols; j++) a.OutputMap.AddBias(u, j, 1);
            yield return u;
        }
    }
}

/// <summary>
/// residual: R ∈ O(d) with R·1 = 1. Embeddings and residual writers → ·R; each LayerNorm reading the stream keeps
/// (g, b) and its maps take W → G⁻¹·Rᵀ·G·W with c → c + b·W − b·W′ (so (n·R⊙g + b)·W′ + c′ = (n⊙g + b)·W + c); a
/// bias-free output map absorbs b·W − b·W′ through its mean direction, W′ += outer(1/g, u), u = (b·W − b·W′)/(b·(1/g)).
/// With tied embeddings the token table must be both E·R and (G⁻¹RᵀG·Eᵀ)ᵀ: only a uniform final gain allows it.
/// </summary>
public sealed class ResidualKind : GaugeKind
{
    public override string Name => "residual";
    public override string Description => "residual stream R ∈ O(d), R·1 = 1, LayerNorm gains and biases folded through";
    public override int Count(GaugeArch a) => a.PreLn && !a.Tied ? (a.D - 1) * (a.D - 2) / 2 : 0;
    /// <summary>Post-LN (BERT): the LayerNorm gains act on the stream itself, element-wise; no rotation commutes with them.</summary>
    public override bool Applies(GaugeArch a) => a.PreLn;
    public override bool IsSymmetry(GaugeArch a, ParamSet p)
    {
        if (!a.PreLn) return false;
        if (!a.Tied) return true;
        var g = p[a.FinalLnGain];
        return g.All(x => Math.Abs(x - g[0]) <= 1e-15 * Math.Abs(g[0]));
    }

    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        if (!a.PreLn) throw new InputException("residual: only pre-LN architectures have the residual rotation");
        Transform(a, p, p, OrthogonalFixingOnes(a.D, rng), tangent: false);
    }

    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p)
    {
        if (Count(a) == 0) yield break;
        int d = a.D;
        var u = OnesComplementBasis(d);
        for (int i = 0; i < d - 1; i++)
            for (int j = i + 1; j < d - 1; j++)
            {
                // X = U·(E_ij − E_ji)·Uᵀ: antisymmetric, X·1 = 0.
                var x = new double[d, d];
                for (int r = 0; r < d; r++)
                    for (int c = 0; c < d; c++) x[r, c] = u[r, i] * u[c, j] - u[r, j] * u[c, i];
                var t = p.ZerosLike();
                Transform(a, p, t, x, tangent: true);
                yield return t;
            }
    }

    /// <summary>Finite (R, written into dst = src) or tangent (X with R = I + X to first order, added into dst).</summary>
    static void Transform(GaugeArch a, ParamSet src, ParamSet dst, double[,] R, bool tangent)
    {
        int d = a.D;
        var orig = tangent ? src : src.Clone();
        // Rows living in the residual stream: embeddings (the tied table is handled as the output map) and writers.
        foreach (var name in a.Tied ? [a.PositionEmbedding] : new[] { a.TokenEmbedding, a.PositionEmbedding })
        {
            var table = MapRef.Full(name, null, Backends.WeightLayout.InOut, orig[name].Length / d, d);
            MapCols(orig, dst, table, R, add: tangent);
        }
        foreach (var w in a.ResidualWriters) MapCols(orig, dst, w, R, add: tangent);
        // Readers: W → G⁻¹·Rᵀ·G·W (tangent: −G⁻¹·X·G·W).
        foreach (var ln in a.ResidualReaders)
        {
            var g = orig[ln.Gain]; var b = orig[ln.Bias];
            var m = new double[d, d];
            for (int i = 0; i < d; i++) for (int k = 0; k < d; k++) m[i, k] = (tangent ? -R[i, k] : R[k, i]) * g[k] / g[i];
            double bOverG = b.Select((x, i) => x / g[i]).Sum();
            foreach (var r in ln.Readers)
            {
                var bw = VecTimes(orig, r, b);
                var work = orig.ZerosLike();
                MapRows(orig, work, r, 0, m, add: false);            // new W (finite) or δW (tangent)
                var bw2 = VecTimes(work, r, b);
                var diff = tangent ? bw2.Select(x => -x).ToArray() : bw.Select((x, j) => x - bw2[j]).ToArray();
                if (!r.HasBias && diff.Any(x => x != 0) && bOverG == 0)
                    throw new InputException($"residual: {ln.Name}'s bias·(1/gain) is 0, so the bias-free {r.Weight} cannot absorb b·W − b·W′ (perturb {ln.Bias} first)");
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < r.Cols; j++)
                    {
                        double v = work[r.Weight][r.Index(i, j)];
                        if (!r.HasBias && bOverG != 0) v += diff[j] / bOverG / g[i];
                        if (tangent) r.Add(dst, i, j, v); else r.Set(dst, i, j, v);
                    }
                if (r.HasBias) for (int j = 0; j < r.Cols; j++) r.AddBias(dst, j, diff[j]);
            }
        }
    }
}

/// <summary>
/// mlp: per layer, a permutation π of the F hidden units: column j of W_fc (and b_fc[j]) ← column π(j), row j of
/// W_proj ← row π(j). A discrete group: no flat directions for a GELU MLP (a ReLU/PReLU MLP would add F positive
/// per-unit scalings, which these models do not have).
/// </summary>
public sealed class MlpPermutationKind : GaugeKind
{
    public override string Name => "mlp";
    public override string Description => "permutation of each MLP's hidden units (discrete)";
    public override int Count(GaugeArch a) => 0;
    public override void Apply(GaugeArch a, ParamSet p, Random rng)
    {
        for (int l = 0; l < a.MlpIn.Length; l++)
        {
            MapRef fc = a.MlpIn[l], proj = a.MlpOut[l];
            int[] pi = [.. Range(fc.Cols)];
            rng.Shuffle(pi);
            var src = p.Clone();
            for (int j = 0; j < fc.Cols; j++)
            {
                for (int i = 0; i < fc.In; i++) fc.Set(p, i, j, fc.Get(src, i, pi[j]));
                if (fc.HasBias) fc.SetBias(p, j, fc.GetBias(src, pi[j]));
                for (int k = 0; k < proj.Cols; k++) proj.Set(p, j, k, proj.Get(src, pi[j], k));
            }
        }
    }
    public override IEnumerable<ParamSet> Tangents(GaugeArch a, ParamSet p) => [];
}
