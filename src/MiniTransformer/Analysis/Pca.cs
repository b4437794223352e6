using MathNet.Numerics.LinearAlgebra;

namespace MiniTransformer.Analysis;

/// <summary>
/// Principal component analysis of n points in R^d by the thin SVD of the centred data matrix
/// X − 1μᵀ = U Σ Vᵀ (float64, MathNet): the components are the first k rows of Vᵀ, the coordinates of a point x are
/// Vₖᵀ(x − μ), and component j explains σⱼ² / Σᵢ σᵢ² of the variance.
/// </summary>
public sealed class Pca
{
    public double[] Mean { get; }
    /// <summary>Unit, mutually orthogonal principal directions [k][d], by decreasing variance.</summary>
    public double[][] Components { get; }
    /// <summary>The fraction of the total variance each component explains.</summary>
    public double[] ExplainedRatio { get; }

    Pca(double[] mean, double[][] components, double[] ratio) { Mean = mean; Components = components; ExplainedRatio = ratio; }

    public static Pca Fit(IReadOnlyList<double[]> points, int k)
    {
        int n = points.Count;
        if (n < 2) throw new ArgumentException("PCA needs at least two points");
        int d = points[0].Length;
        if (k < 1 || k > Math.Min(n, d)) throw new ArgumentException($"k must be in 1..{Math.Min(n, d)} (got {k})");
        var mean = new double[d];
        foreach (var p in points) for (int j = 0; j < d; j++) mean[j] += p[j] / n;
        var x = Matrix<double>.Build.Dense(n, d, (i, j) => points[i][j] - mean[j]);
        var svd = x.Svd(computeVectors: true);
        var s = svd.S.ToArray();
        double total = s.Sum(v => v * v);
        var vt = svd.VT;
        var comps = new double[k][];
        for (int c = 0; c < k; c++)
        {
            comps[c] = vt.Row(c).ToArray();
            // Sign convention (SVD signs are arbitrary): the largest-magnitude entry of each component is positive.
            int arg = 0;
            for (int j = 1; j < d; j++) if (Math.Abs(comps[c][j]) > Math.Abs(comps[c][arg])) arg = j;
            if (comps[c][arg] < 0) for (int j = 0; j < d; j++) comps[c][j] = -comps[c][j];
        }
        var ratio = new double[k];
        for (int c = 0; c < k; c++) ratio[c] = total > 0 ? s[c] * s[c] / total : 0;
        return new Pca(mean, comps, ratio);
    }

    /// <summary>Coordinates of x along the components: Vₖᵀ(x − μ).</summary>
    public double[] Project(ReadOnlySpan<double> x)
    {
        var r = new double[Components.Length];
        for (int c = 0; c < r.Length; c++)
        {
            double s = 0;
            for (int j = 0; j < x.Length; j++) s += Components[c][j] * (x[j] - Mean[j]);
            r[c] = s;
        }
        return r;
    }
}
