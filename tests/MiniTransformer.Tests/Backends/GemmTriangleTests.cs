using MiniTransformer.Backends.Cpu;

namespace MiniTransformer.Tests.Backends;

/// <summary>
/// <see cref="GemmTriangle"/> hints (causal attention): the wanted part of C must equal the general product bit for
/// bit, since the skipped work is either unwanted (LowerC) or exact zeros (LowerA, UpperA).
/// </summary>
public class GemmTriangleTests
{
    // Sizes that take the packed path (several register tiles, a partial last tile, two K blocks for 300).
    [Theory]
    [InlineData(64, 64, false, false)]
    [InlineData(64, 64, true, false)]
    [InlineData(77, 40, false, true)]
    [InlineData(300, 33, true, true)]
    public void HintsGiveTheGeneralProduct(int t, int n, bool transA, bool transB)
    {
        foreach (int threads in new[] { 1, 2 })
        {
            int saved = Gemm.MaxThreads;
            try
            {
                Gemm.MaxThreads = threads;
                CheckLowerC(t, n, transA, transB);
                CheckZeroPattern(t, n, lower: true, transA, transB);
                CheckZeroPattern(t, n, lower: false, transA, transB);
            }
            finally
            {
                Gemm.MaxThreads = saved;
            }
        }
    }

    /// <summary>C[t,t] = op(A)[t,n]·op(B)[n,t] with LowerC: the lower triangle as in the general product, the rest untouched.</summary>
    private static void CheckLowerC(int t, int n, bool transA, bool transB)
    {
        var rng = new Random(t * 31 + n);
        float[] a = Random(rng, t * n), b = Random(rng, n * t);
        float[] full = new float[t * t], tri = Enumerable.Repeat(float.NaN, t * t).ToArray();
        Gemm.Multiply<float>(transA, transB, t, t, n, a, transA ? t : n, b, transB ? n : t, full, t, accumulate: false);
        Gemm.Multiply<float>(transA, transB, t, t, n, a, transA ? t : n, b, transB ? n : t, tri, t, accumulate: false, GemmTriangle.LowerC);
        for (int i = 0; i < t; i++)
            for (int j = 0; j <= i; j++)
                Assert.Equal(full[i * t + j], tri[i * t + j]);
    }

    /// <summary>C[t,n] (+)= op(A)[t,t]·op(B)[t,n] with A lower (LowerA) or upper (UpperA) triangular: identical to the general product.</summary>
    private static void CheckZeroPattern(int t, int n, bool lower, bool transA, bool transB)
    {
        var rng = new Random(t * 17 + n + (lower ? 1 : 0));
        float[] a = Random(rng, t * t), b = Random(rng, t * n);
        for (int i = 0; i < t; i++)
            for (int k = 0; k < t; k++)
                if (lower ? k > i : k < i)
                    a[transA ? k * t + i : i * t + k] = 0;   // op(A)[i,k]
        foreach (bool acc in new[] { false, true })
        {
            float[] c0 = Random(rng, t * n);
            float[] full = (float[])c0.Clone(), hinted = (float[])c0.Clone();
            Gemm.Multiply<float>(transA, transB, t, n, t, a, t, b, transB ? t : n, full, n, acc);
            Gemm.Multiply<float>(transA, transB, t, n, t, a, t, b, transB ? t : n, hinted, n, acc,
                lower ? GemmTriangle.LowerA : GemmTriangle.UpperA);
            Assert.Equal(full, hinted);
        }
    }

    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}
