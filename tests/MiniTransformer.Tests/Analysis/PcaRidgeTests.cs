using MiniTransformer.Analysis;

namespace MiniTransformer.Tests.Analysis;

public sealed class PcaRidgeTests
{
    [Fact]
    public void Ridge_matches_the_hand_solved_one_dimensional_case()
    {
        // x = 0, 1, 2; y = 1, 3, 5. Centred: x̃ = −1, 0, 1, ỹ = −2, 0, 2; Σx̃² = 2, Σx̃ỹ = 4.
        double[][] x = [[0], [1], [2]], y = [[1], [3], [5]];
        var ols = Ridge.Fit(x, y, 0);            // w = 4/2 = 2, b = 3 − 2·1 = 1
        Assert.Equal(2.0, ols.W[0, 0], 1e-12);
        Assert.Equal(1.0, ols.B[0], 1e-12);
        var ridge = Ridge.Fit(x, y, 1);          // w = 4/(2+1) = 4/3, b = 3 − 4/3 = 5/3
        Assert.Equal(4.0 / 3, ridge.W[0, 0], 1e-12);
        Assert.Equal(5.0 / 3, ridge.B[0], 1e-12);
        Assert.Equal(5.0 / 3 + 4.0 / 3 * 10, ridge.Predict([10])[0], 1e-12);
        Assert.Equal(2.0, Ridge.GramScale(x), 1e-15);       // mean diagonal of X̃ᵀX̃: Σx̃² = 2 (d = 1)
    }

    [Theory]
    [InlineData(40, 5)]    // primal d×d system
    [InlineData(6, 9)]     // fewer samples than inputs: dual n×n system (the exact-recovery part then needs λ = 0 only)
    public void Ridge_recovers_an_exact_affine_map_and_satisfies_the_normal_equations(int n, int d)
    {
        var r = new Random(5);
        int m = 3;
        var wTrue = new double[d, m];
        for (int i = 0; i < d; i++) for (int j = 0; j < m; j++) wTrue[i, j] = r.NextDouble() - 0.5;
        var x = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, d).Select(_ => r.NextDouble()).ToArray()).ToArray();
        var y = x.Select(xi => Enumerable.Range(0, m).Select(j => 0.7 * j + Enumerable.Range(0, d).Sum(i => xi[i] * wTrue[i, j])).ToArray()).ToArray();
        var ols = Ridge.Fit(x, y, 0);
        if (n > d)
        {
            for (int i = 0; i < d; i++) for (int j = 0; j < m; j++) Assert.Equal(wTrue[i, j], ols.W[i, j], 1e-10);
            for (int j = 0; j < m; j++) Assert.Equal(0.7 * j, ols.B[j], 1e-10);
        }
        else
            for (int k = 0; k < n; k++) for (int j = 0; j < m; j++) Assert.Equal(y[k][j], ols.Predict(x[k])[j], 1e-10);   // interpolates
        // With λ > 0: X̃ᵀ(Ỹ − X̃W) = λW (the gradient of the penalised loss vanishes).
        double lambda = 0.3;
        var rd = Ridge.Fit(x, y, lambda);
        var xm = Enumerable.Range(0, d).Select(i => x.Average(v => v[i])).ToArray();
        var ym = Enumerable.Range(0, m).Select(j => y.Average(v => v[j])).ToArray();
        for (int i = 0; i < d; i++)
            for (int j = 0; j < m; j++)
            {
                double g = 0;
                for (int k = 0; k < n; k++)
                {
                    double pred = Enumerable.Range(0, d).Sum(l => (x[k][l] - xm[l]) * rd.W[l, j]);
                    g += (x[k][i] - xm[i]) * (y[k][j] - ym[j] - pred);
                }
                Assert.Equal(lambda * rd.W[i, j], g, 1e-10);
            }
    }

    [Fact]
    public void Pca_finds_the_plane_the_points_lie_in_and_projects_onto_it()
    {
        double[] e1 = [1 / Math.Sqrt(2), 1 / Math.Sqrt(2), 0, 0], e2 = [0, 0, 0.6, 0.8], c = [1, 2, 3, 4];
        // A symmetric product grid in the plane: no cross-covariance, more spread along e1 than along e2.
        var pts = (from i in Enumerable.Range(-3, 7) from j in Enumerable.Range(-2, 5)
                   select c.Select((ci, k) => ci + 0.5 * i * e1[k] + 0.25 * j * e2[k]).ToArray()).ToList();
        var pca = Pca.Fit(pts, 2);
        Assert.Equal(1.0, Math.Abs(Geodesic.Dot(pca.Components[0], e1)), 1e-10);
        Assert.Equal(1.0, Math.Abs(Geodesic.Dot(pca.Components[1], e2)), 1e-10);
        Assert.Equal(0.0, Geodesic.Dot(pca.Components[0], pca.Components[1]), 1e-12);
        Assert.Equal(1.0, pca.ExplainedRatio.Sum(), 1e-10);                 // nothing outside the plane
        Assert.True(pca.ExplainedRatio[0] > pca.ExplainedRatio[1]);
        // Distances are kept exactly by the projection (the points lie in the plane).
        var p0 = pca.Project(pts[0]); var p1 = pca.Project(pts[1]);
        double dProj = Math.Sqrt(Math.Pow(p0[0] - p1[0], 2) + Math.Pow(p0[1] - p1[1], 2));
        double dTrue = Math.Sqrt(pts[0].Zip(pts[1]).Sum(z => (z.First - z.Second) * (z.First - z.Second)));
        Assert.Equal(dTrue, dProj, 1e-10);
    }
}
