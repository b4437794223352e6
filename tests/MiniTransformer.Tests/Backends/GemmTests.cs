using System.Numerics;
using MiniTransformer.Backends.Cpu;

namespace MiniTransformer.Tests.Backends;

public class GemmTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 17, 33, 65 }, { 6, 32, 1 }, { 129, 97, 255 },
        { 0, 5, 7 }, { 5, 0, 7 }, { 5, 7, 0 }, { 0, 0, 0 },
        { 1, 300, 70 },     // one row (generation), direct path
        { 2, 33, 9 },       // few rows
        { 8, 32, 192 },     // exactly one register tile, one KC block
        { 9, 33, 193 },     // one past every tile boundary
        { 40, 3, 900 },     // narrow N: split over M, several KC blocks
        { 200, 70, 50 },    // M > MC
        { 33, 3100, 20 },   // N > NC
        { 64, 64, 64 },
    };

    public static IEnumerable<object[]> Cases()
    {
        foreach (var s in Shapes)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    foreach (bool acc in new[] { false, true })
                        yield return new object[] { (int)s[0], (int)s[1], (int)s[2], ta, tb, acc };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float32MatchesReference(int m, int n, int k, bool transA, bool transB, bool accumulate)
        => Check<float>(m, n, k, transA, transB, accumulate, pad: 0, tol: 1e-5, seed: 1);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float64MatchesReference(int m, int n, int k, bool transA, bool transB, bool accumulate)
        => Check<double>(m, n, k, transA, transB, accumulate, pad: 0, tol: 1e-12, seed: 2);

    [Theory]
    [InlineData(17, 33, 65)]
    [InlineData(129, 97, 255)]
    [InlineData(1, 40, 30)]
    [InlineData(3, 5, 7)]
    public void LeadingDimensionsLargerThanRows(int m, int n, int k)
    {
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
            {
                Check<float>(m, n, k, ta, tb, accumulate: true, pad: 5, tol: 1e-5, seed: 3);
                Check<double>(m, n, k, ta, tb, accumulate: false, pad: 3, tol: 1e-12, seed: 4);
            }
    }

    [Fact]
    public void LargeProductMatchesReference()
    {
        Check<float>(300, 520, 400, false, false, false, pad: 0, tol: 1e-5, seed: 5);
        Check<float>(300, 520, 400, true, true, true, pad: 1, tol: 1e-5, seed: 6);
        Check<double>(1000, 40, 300, false, true, false, pad: 0, tol: 1e-12, seed: 7);   // narrow N: threads split M
        Check<float>(3, 5000, 700, true, false, true, pad: 2, tol: 1e-5, seed: 8);      // few rows: threaded direct path
        Check<float>(20, 30, 513, false, false, false, pad: 0, tol: 1e-5, seed: 9);     // K cut into 3 equal blocks
    }

    [Fact]
    public void OverwriteIgnoresNaNInOutput()
    {
        var a = new float[] { 1, 2, 3, 4 };   // [2,2]
        var b = new float[] { 5, 6, 7, 8 };
        var c = new float[] { float.NaN, float.NaN, float.NaN, float.NaN };
        Gemm.Multiply<float>(false, false, 2, 2, 2, a, 2, b, 2, c, 2, accumulate: false);
        Assert.Equal(new float[] { 19, 22, 43, 50 }, c);

        var c0 = new float[] { float.NaN, 1 };
        Gemm.Multiply<float>(false, false, 1, 2, 0, [], 1, [], 2, c0, 2, accumulate: false);
        Assert.Equal(new float[] { 0, 0 }, c0);
    }

    [Theory]
    [InlineData(257, 515, 301, false, false)]
    [InlineData(257, 515, 301, true, true)]
    [InlineData(1000, 40, 300, true, false)]
    [InlineData(3, 5000, 700, false, true)]
    public void DeterministicAcrossCallsAndThreadCounts(int m, int n, int k, bool ta, bool tb)
    {
        var rng = new Random(7);
        float[] a = RandomArray<float>(rng, m * k), b = RandomArray<float>(rng, k * n);
        int lda = ta ? m : k, ldb = tb ? k : n;
        float[] c1 = new float[m * n], c2 = new float[m * n], c3 = new float[m * n];
        int saved = Gemm.MaxThreads;
        try
        {
            Gemm.MaxThreads = Math.Max(2, Environment.ProcessorCount);
            Gemm.Multiply<float>(ta, tb, m, n, k, a, lda, b, ldb, c1, n, false);
            Gemm.Multiply<float>(ta, tb, m, n, k, a, lda, b, ldb, c2, n, false);
            Gemm.MaxThreads = 1;
            Gemm.Multiply<float>(ta, tb, m, n, k, a, lda, b, ldb, c3, n, false);
        }
        finally
        {
            Gemm.MaxThreads = saved;
        }
        Assert.True(c1.AsSpan().SequenceEqual(c2), "two calls differ");
        Assert.True(c1.AsSpan().SequenceEqual(c3), "1 thread and many threads differ");
    }

    [Fact]
    public void RejectsTooSmallBuffers()
    {
        Assert.Throws<ArgumentException>(() =>
            Gemm.Multiply<float>(false, false, 2, 2, 2, new float[3], 2, new float[4], 2, new float[4], 2, false));
        Assert.Throws<ArgumentException>(() =>
            Gemm.Multiply<float>(false, false, 2, 2, 2, new float[4], 1, new float[4], 2, new float[4], 2, false));
    }

    private static T[] RandomArray<T>(Random rng, int n) where T : IFloatingPointIeee754<T>
    {
        var x = new T[n];
        for (int i = 0; i < n; i++)
            x[i] = T.CreateChecked(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>Runs Gemm on random data (padding every leading dimension by <paramref name="pad"/>) and compares with a float64 naive product.</summary>
    private static void Check<T>(int m, int n, int k, bool transA, bool transB, bool accumulate, int pad, double tol, int seed)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var rng = new Random(seed * 1000003 + m * 7919 + n * 104729 + k);
        int aRows = transA ? k : m, aCols = transA ? m : k;
        int bRows = transB ? n : k, bCols = transB ? k : n;
        int lda = aCols + pad, ldb = bCols + pad, ldc = n + pad;
        T[] a = RandomArray<T>(rng, Math.Max(0, aRows * lda));
        T[] b = RandomArray<T>(rng, Math.Max(0, bRows * ldb));
        T[] c = RandomArray<T>(rng, Math.Max(0, m * ldc));
        T[] c0 = (T[])c.Clone();

        Gemm.Multiply<T>(transA, transB, m, n, k, a, Math.Max(1, lda), b, Math.Max(1, ldb), c, Math.Max(1, ldc), accumulate);

        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, mag = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = double.CreateChecked(transA ? a[p * lda + i] : a[i * lda + p]);
                    double y = double.CreateChecked(transB ? b[j * ldb + p] : b[p * ldb + j]);
                    sum += x * y;
                    mag += Math.Abs(x * y);
                }
                double prior = double.CreateChecked(c0[i * ldc + j]);
                if (accumulate) { sum += prior; mag += Math.Abs(prior); }
                double got = double.CreateChecked(c[i * ldc + j]);
                double err = Math.Abs(got - sum);
                Assert.True(err <= tol * Math.Max(mag, 1e-30) + 1e-30,
                    $"C[{i},{j}] = {got}, expected {sum} (err {err:E2}, scale {mag:E2}) for m={m} n={n} k={k} tA={transA} tB={transB} acc={accumulate}");
            }
            // Padding columns of C must be untouched.
            for (int j = n; j < ldc; j++)
                Assert.Equal(c0[i * ldc + j], c[i * ldc + j]);
        }
    }
}
