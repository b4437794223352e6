using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MiniTransformer.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace MiniTransformer.Backends.Cpu;

/// <summary>
/// Fused and single-pass kernels: the optimizer update with gradient zeroing, gelu in one sweep (also as the
/// epilogue of the MLP's first matmul), residual + layernorm, and a parallel zero. Vector512 paths where the
/// hardware has it; otherwise the composed TensorPrimitives kernels serve. Every loop is a row- or element-wise map
/// over fixed partitions, so results do not depend on scheduling.
/// </summary>
public sealed partial class CpuBackend<F>
{
    static bool V512 => Vector512.IsHardwareAccelerated;
    static int W => Vector512<F>.Count;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<F> Exp(Vector512<F> v) => typeof(F) == typeof(float)
        ? Vector512.Exp(v.As<F, float>()).As<float, F>()
        : Vector512.Exp(v.As<F, double>()).As<double, F>();

    // ================= optimizer, fused with zeroing =================

    public void AdamWZeroGrad(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, in AdamWStep step, bool zeroGrad) =>
        AdamWCore(param, grad, m, v, step, zeroGrad);

    public void SgdZeroGrad(Tensor<F> param, Tensor<F> grad, double learningRate, double weightDecay, double gradScale, bool zeroGrad)
    {
        F decay = Cast(1 - learningRate * weightDecay), step = Cast(-learningRate * gradScale);
        Parallelism.For(param.Length, ElementGrain, (lo, hi) =>
        {
            var p = param.Data.AsSpan(lo, hi - lo);
            var g = grad.Data.AsSpan(lo, hi - lo);
            TensorPrimitives.Multiply(p, decay, p);
            TensorPrimitives.MultiplyAdd(g, step, p, p);
            if (zeroGrad) g.Clear();
        });
    }

    public void Zero(Tensor<F> t) =>
        Parallelism.For(t.Length, 1 << 16, (lo, hi) => t.Data.AsSpan(lo, hi - lo).Clear());

    /// <summary>True when every element is +0 or −0 (early exit at the first other value).</summary>
    public static bool IsZero(Tensor<F> t)
    {
        if (t.Length == 0) return true;
        if (t.Length < 1 << 16) return !t.Data.AsSpan().ContainsAnyExcept(F.Zero, F.NegativeZero);
        // Chunks of 64K elements claimed in order by the pool's threads; once one finds a non-zero the rest return at once.
        const int chunk = 1 << 16;
        int chunks = (t.Length + chunk - 1) / chunk;
        int any = 0;
        Parallelism.Run(chunks, Parallelism.Threads, c =>
        {
            if (Volatile.Read(ref any) != 0) return;
            int lo = c * chunk, n = Math.Min(chunk, t.Length - lo);
            if (t.Data.AsSpan(lo, n).ContainsAnyExcept(F.Zero, F.NegativeZero)) Volatile.Write(ref any, 1);
        });
        return any == 0;
    }

    // ================= gelu (single sweep) =================
    // tanh form: ½x(1 + tanh u) = x·σ(2u), u = √(2/π)(x + 0.044715x³), σ(z) = 1/(1 + e^(−z)) — one exp, no cancellation.
    // d/dx = σ + 2x·σ(1 − σ)·√(2/π)(1 + 3·0.044715x²).

    static readonly F GeluCubic3 = Cast(3 * 0.044715);
    static readonly F Two = Cast(2.0);

    /// <summary>post[i] = gelu_tanh(pre[i] (+ bias[i mod bias.Length], also written back into pre)).</summary>
    static void GeluTanhRow(Span<F> pre, Span<F> post, ReadOnlySpan<F> bias)
    {
        int i = 0, n = pre.Length;
        if (V512)
        {
            var k0 = Vector512.Create(Sqrt2OverPi * Cast(-2.0)); var k1 = Vector512.Create(GeluCubic);
            var one = Vector512<F>.One;
            for (; i <= n - W; i += W)
            {
                var x = Vector512.Create<F>(pre.Slice(i));
                if (!bias.IsEmpty) { x += Vector512.Create<F>(bias.Slice(i)); x.CopyTo(pre.Slice(i)); }
                var e = Exp(k0 * x * (one + k1 * x * x));
                (x / (one + e)).CopyTo(post.Slice(i));
            }
        }
        for (; i < n; i++)
        {
            F x = pre[i];
            if (!bias.IsEmpty) { x += bias[i]; pre[i] = x; }
            post[i] = x / (F.One + F.Exp(Cast(-2.0) * Sqrt2OverPi * x * (F.One + GeluCubic * x * x)));
        }
    }

    static void GeluTanhBackwardSpan(Span<F> dx, ReadOnlySpan<F> dy, ReadOnlySpan<F> xs)
    {
        int i = 0, n = xs.Length;
        if (V512)
        {
            var k0 = Vector512.Create(Sqrt2OverPi); var k1 = Vector512.Create(GeluCubic); var k3 = Vector512.Create(GeluCubic3);
            var one = Vector512<F>.One; var two = Vector512.Create(Two);
            for (; i <= n - W; i += W)
            {
                var x = Vector512.Create<F>(xs.Slice(i));
                var x2 = x * x;
                var s = one / (one + Exp(-two * k0 * x * (one + k1 * x2)));
                var g = s + two * x * s * (one - s) * k0 * (one + k3 * x2);
                var d = Vector512.Create<F>(dx.Slice(i)) + g * Vector512.Create<F>(dy.Slice(i));
                d.CopyTo(dx.Slice(i));
            }
        }
        for (; i < n; i++)
        {
            F x = xs[i], x2 = x * x;
            F s = F.One / (F.One + F.Exp(-Two * Sqrt2OverPi * x * (F.One + GeluCubic * x2)));
            F g = s + Two * x * s * (F.One - s) * Sqrt2OverPi * (F.One + GeluCubic3 * x2);
            dx[i] += g * dy[i];
        }
    }

    public void MatmulGeluForward(Tensor<F> pre, Tensor<F> post, Tensor<F> x, Tensor<F> w, Tensor<F>? b, int N, int K, int M,
        WeightLayout layout, GeluForm form)
    {
        if (form != GeluForm.Tanh)
        {
            MatmulForward(pre, x, w, b, N, K, M, layout);
            GeluForward(post, pre, N * M, form);
            return;
        }
        bool transB = layout == WeightLayout.OutIn;
        Gemm.Multiply<F>(false, transB, N, M, K, x.Data, K, w.Data, transB ? K : M, pre.Data, M, accumulate: false);
        // Epilogue: bias and gelu in one sweep over the rows just produced.
        Parallelism.For(N, Math.Max(1, 8192 / Math.Max(M, 1)), (lo, hi) =>
        {
            for (int n = lo; n < hi; n++)
                GeluTanhRow(pre.Data.AsSpan(n * M, M), post.Data.AsSpan(n * M, M), b is null ? default : b.Data.AsSpan(0, M));
        });
    }

    // ================= residual + layernorm =================

    public void ResidualLayerNormForward(Tensor<F> resid, Tensor<F> y, Tensor<F> mean, Tensor<F> rstd, Tensor<F> a, Tensor<F> b,
        Tensor<F> gamma, Tensor<F> beta, int N, int C, double eps)
    {
        F tc = F.CreateTruncating(C), te = Cast(eps);
        Parallelism.For(N, RowGrain(C), (lo, hi) =>
        {
            for (int n = lo; n < hi; n++)
            {
                var rr = resid.Data.AsSpan(n * C, C);
                TensorPrimitives.Add(a.Data.AsSpan(n * C, C), b.Data.AsSpan(n * C, C), rr);
                LayerNormRow(rr, y.Data.AsSpan(n * C, C), gamma.Data, beta.Data, tc, te, out mean.Data[n], out rstd.Data[n]);
            }
        });
    }

    /// <summary>One row of layernorm: the same arithmetic (and order) as <see cref="LayerNormForward"/>.</summary>
    static void LayerNormRow(ReadOnlySpan<F> xr, Span<F> yr, ReadOnlySpan<F> gamma, ReadOnlySpan<F> beta, F tc, F te, out F mu, out F rs)
    {
        mu = TensorPrimitives.Sum<F>(xr) / tc;
        TensorPrimitives.Subtract(xr, mu, yr);
        F var = TensorPrimitives.SumOfSquares<F>(yr) / tc;
        rs = F.One / F.Sqrt(var + te);
        TensorPrimitives.Multiply(yr, rs, yr);
        TensorPrimitives.FusedMultiplyAdd(yr, gamma, beta, yr);
    }
}
