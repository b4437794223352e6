namespace MiniTransformer.Gauge;

/// <summary>Seeded random group elements (well conditioned) and the few small dense-matrix helpers the kinds need.</summary>
public static class GroupElements
{
    public static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    public static double[] GaussianVector(int n, double std, Random rng)
    {
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = std * Gaussian(rng);
        return v;
    }

    /// <summary>A random orthogonal n×n matrix (Gram–Schmidt of a Gaussian matrix, twice for accuracy).</summary>
    public static double[,] Orthogonal(int n, Random rng)
    {
        var q = new double[n, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) q[i, j] = Gaussian(rng);
        OrthonormalizeColumns(q, 0);
        return q;
    }

    /// <summary>Gram–Schmidt on the columns of q from column <paramref name="start"/> on (earlier ones kept, assumed orthonormal).</summary>
    public static void OrthonormalizeColumns(double[,] q, int start)
    {
        int n = q.GetLength(0), m = q.GetLength(1);
        for (int j = start; j < m; j++)
        {
            for (int pass = 0; pass < 2; pass++)
                for (int k = 0; k < j; k++)
                {
                    double dot = 0;
                    for (int i = 0; i < n; i++) dot += q[i, k] * q[i, j];
                    for (int i = 0; i < n; i++) q[i, j] -= dot * q[i, k];
                }
            double norm = 0;
            for (int i = 0; i < n; i++) norm += q[i, j] * q[i, j];
            norm = Math.Sqrt(norm);
            for (int i = 0; i < n; i++) q[i, j] /= norm;
        }
    }

    /// <summary>A = Q₁·diag(s)·Q₂ with s log-uniform in [0.5, 2], and its inverse Q₂ᵀ·diag(1/s)·Q₁ᵀ.</summary>
    public static (double[,] A, double[,] AInv) WellConditioned(int n, Random rng)
    {
        var q1 = Orthogonal(n, rng);
        var q2 = Orthogonal(n, rng);
        var s = new double[n];
        for (int i = 0; i < n; i++) s[i] = Math.Exp(Math.Log(0.5) + rng.NextDouble() * Math.Log(4.0));
        var a = new double[n, n];
        var inv = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double x = 0, y = 0;
                for (int k = 0; k < n; k++) { x += q1[i, k] * s[k] * q2[k, j]; y += q2[k, i] / s[k] * q1[j, k]; }
                a[i, j] = x; inv[i, j] = y;
            }
        return (a, inv);
    }

    /// <summary>Positive scales log-uniform in [0.5, 2].</summary>
    public static double[] Scales(int n, Random rng)
    {
        var k = new double[n];
        for (int i = 0; i < n; i++) k[i] = Math.Exp(Math.Log(0.5) + rng.NextDouble() * Math.Log(4.0));
        return k;
    }

    /// <summary>
    /// A random R ∈ O(d) with R·1 = 1: R = 11ᵀ/d + U·Q·Uᵀ, U an orthonormal basis of 1⊥, Q ∈ O(d−1) random.
    /// </summary>
    public static double[,] OrthogonalFixingOnes(int d, Random rng)
    {
        var u = OnesComplementBasis(d);
        var q = Orthogonal(d - 1, rng);
        var r = new double[d, d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double x = 1.0 / d;
                for (int a = 0; a < d - 1; a++)
                    for (int b = 0; b < d - 1; b++) x += u[i, a] * q[a, b] * u[j, b];
                r[i, j] = x;
            }
        return r;
    }

    /// <summary>An orthonormal basis of the complement of the all-ones vector, as the d−1 columns of a [d, d−1] matrix.</summary>
    public static double[,] OnesComplementBasis(int d)
    {
        // Helmert basis: column k (k = 1..d−1) = (1,…,1, −k, 0,…)/√(k(k+1)).
        var u = new double[d, d - 1];
        for (int k = 1; k < d; k++)
        {
            double s = 1.0 / Math.Sqrt(k * (k + 1.0));
            for (int i = 0; i < k; i++) u[i, k - 1] = s;
            u[k, k - 1] = -k * s;
        }
        return u;
    }

    public static double[,] Transpose(double[,] a)
    {
        int n = a.GetLength(0), m = a.GetLength(1);
        var t = new double[m, n];
        for (int i = 0; i < n; i++) for (int j = 0; j < m; j++) t[j, i] = a[i, j];
        return t;
    }

    public static double[,] Multiply(double[,] a, double[,] b)
    {
        int n = a.GetLength(0), k = a.GetLength(1), m = b.GetLength(1);
        var c = new double[n, m];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
            {
                double s = 0;
                for (int l = 0; l < k; l++) s += a[i, l] * b[l, j];
                c[i, j] = s;
            }
        return c;
    }

    public static double[,] Scale(double[,] a, double s)
    {
        var c = (double[,])a.Clone();
        for (int i = 0; i < c.GetLength(0); i++) for (int j = 0; j < c.GetLength(1); j++) c[i, j] *= s;
        return c;
    }

    /// <summary>The n×n matrix unit E_ab.</summary>
    public static double[,] Unit(int n, int a, int b) { var e = new double[n, n]; e[a, b] = 1; return e; }

    public static double Rms(double[] x) => x.Length == 0 ? 0 : Math.Sqrt(x.Sum(v => v * v) / x.Length);
}
