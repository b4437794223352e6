using MathNet.Numerics.LinearAlgebra;

namespace MiniTransformer.Analysis;

/// <summary>
/// Multi-output ridge regression in closed form, float64 (MathNet):
/// <code>min over W, b   Σᵢ ‖yᵢ − Wᵀxᵢ − b‖² + λ‖W‖²_F</code>
/// The bias is not penalised, so it is solved by centring: with X̃ = X − 1x̄ᵀ, Ỹ = Y − 1ȳᵀ,
/// <code>W = (X̃ᵀX̃ + λI)⁻¹ X̃ᵀỸ,   b = ȳ − Wᵀx̄</code>
/// (Cholesky for λ &gt; 0, on the n×n dual system when there are fewer samples than inputs; the minimum-norm least squares X̃⁺Ỹ when λ = 0).
/// </summary>
public sealed class Ridge
{
    /// <summary>[d_in, d_out].</summary>
    public Matrix<double> W { get; }
    public Vector<double> B { get; }

    Ridge(Matrix<double> w, Vector<double> b) { W = w; B = b; }

    public static Ridge Fit(IReadOnlyList<double[]> x, IReadOnlyList<double[]> y, double lambda)
    {
        int n = x.Count;
        if (n == 0 || y.Count != n) throw new ArgumentException($"need as many targets as inputs (got {n} and {y.Count})");
        if (lambda < 0) throw new ArgumentException($"lambda must be ≥ 0 (got {lambda})");
        var X = Matrix<double>.Build.DenseOfRowArrays(x);
        var Y = Matrix<double>.Build.DenseOfRowArrays(y);
        var xm = X.ColumnSums() / n;
        var ym = Y.ColumnSums() / n;
        var Xc = X - Matrix<double>.Build.Dense(n, X.ColumnCount, (_, j) => xm[j]);
        var Yc = Y - Matrix<double>.Build.Dense(n, Y.ColumnCount, (_, j) => ym[j]);
        Matrix<double> w;
        if (lambda > 0 && n < X.ColumnCount)
        {
            // Fewer samples than inputs: the dual form W = X̃ᵀ(X̃X̃ᵀ + λI)⁻¹Ỹ (the same W, by the push-through
            // identity (X̃ᵀX̃ + λI)⁻¹X̃ᵀ = X̃ᵀ(X̃X̃ᵀ + λI)⁻¹), an n×n system instead of d×d.
            var k = Xc.TransposeAndMultiply(Xc);
            for (int i = 0; i < n; i++) k[i, i] += lambda;
            w = Xc.TransposeThisAndMultiply(k.Cholesky().Solve(Yc));
        }
        else if (lambda > 0)
        {
            var g = Xc.TransposeThisAndMultiply(Xc);
            for (int i = 0; i < g.RowCount; i++) g[i, i] += lambda;
            w = g.Cholesky().Solve(Xc.TransposeThisAndMultiply(Yc));
        }
        else w = Xc.PseudoInverse() * Yc;   // λ = 0: the minimum-norm least-squares solution (rank-deficient inputs too)
        var b = ym - w.TransposeThisAndMultiply(xm);
        return new Ridge(w, b);
    }

    /// <summary>The mean diagonal entry of X̃ᵀX̃ (the centred inputs' Gram matrix): the scale λ is given relative to.</summary>
    public static double GramScale(IReadOnlyList<double[]> x)
    {
        int n = x.Count, d = x[0].Length;
        double s = 0;
        for (int j = 0; j < d; j++)
        {
            double m = 0;
            for (int i = 0; i < n; i++) m += x[i][j];
            m /= n;
            for (int i = 0; i < n; i++) s += (x[i][j] - m) * (x[i][j] - m);
        }
        return s / d;
    }

    public double[] Predict(double[] x) => (W.TransposeThisAndMultiply(Vector<double>.Build.DenseOfArray(x)) + B).ToArray();
}
