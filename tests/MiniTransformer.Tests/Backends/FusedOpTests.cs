using System.Numerics;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Backends;

/// <summary>
/// The fused ops (AdamW/SGD + zeroing, residual + layernorm, matmul + gelu) against the ops they fuse, the
/// single-sweep gelu and cross-entropy kernels against float64 formulas at GPT-2 sizes, the profiling wrapper, and the
/// optimizer's fused update + zeroing.
/// </summary>
public sealed class FusedOpTests
{
    static Tensor<F> Rand<F>(Random rng, double scale, params int[] shape) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var t = new Tensor<F>(shape);
        for (int i = 0; i < t.Length; i++) t.Data[i] = F.CreateTruncating(scale * (rng.NextDouble() * 2 - 1));
        return t;
    }

    static void AssertBitEqual<F>(Tensor<F> a, Tensor<F> b, string what) where F : unmanaged, IFloatingPointIeee754<F>
    {
        for (int i = 0; i < a.Length; i++)
            if (!a.Data[i].Equals(b.Data[i])) Assert.Fail($"{what}[{i}]: {a.Data[i]} != {b.Data[i]}");
    }

    public static TheoryData<int> Sizes => new() { 7, 1000, 70_001 };

    [Theory, MemberData(nameof(Sizes))]
    public void AdamWZeroGrad_is_AdamW_then_clear_bit_for_bit(int n)
    {
        Check<float>(n); Check<double>(n);
        static void Check<F>(int n) where F : unmanaged, IFloatingPointIeee754<F>
        {
            var rng = new Random(n);
            var p1 = Rand<F>(rng, 1, n); var g1 = Rand<F>(rng, 1, n); var m1 = Rand<F>(rng, 0.1, n); var v1 = Rand<F>(rng, 0.1, n);
            for (int i = 0; i < n; i++) v1.Data[i] = F.Abs(v1.Data[i]);
            var (p2, g2, m2, v2) = (p1.Clone(), g1.Clone(), m1.Clone(), v1.Clone());
            var step = new AdamWStep(1e-3, 0.9, 0.95, 1e-8, 0.1, 3, 0.7);
            IBackend<F> ops = CpuBackend<F>.Instance;
            ops.AdamW(p1, g1, m1, v1, step);
            ops.AdamWZeroGrad(p2, g2, m2, v2, step, zeroGrad: true);
            AssertBitEqual(p1, p2, "param"); AssertBitEqual(m1, m2, "m"); AssertBitEqual(v1, v2, "v");
            Assert.True(CpuBackend<F>.IsZero(g2));
            var p3 = p1.Clone(); var g3 = g1.Clone(); var p4 = p1.Clone(); var g4 = g1.Clone();
            ops.Sgd(p3, g3, 0.1, 0.01, 0.5);
            ops.SgdZeroGrad(p4, g4, 0.1, 0.01, 0.5, zeroGrad: true);
            AssertBitEqual(p3, p4, "sgd param");
            Assert.True(CpuBackend<F>.IsZero(g4));
        }
    }

    [Fact]
    public void ResidualLayerNorm_is_residual_then_layernorm_bit_for_bit()
    {
        Check<float>(); Check<double>();
        static void Check<F>() where F : unmanaged, IFloatingPointIeee754<F>
        {
            foreach (var (N, C) in new[] { (7, 13), (64, 768) })
            {
                var rng = new Random(N * C);
                var a = Rand<F>(rng, 1, N, C); var b = Rand<F>(rng, 1, N, C); var g = Rand<F>(rng, 1, C); var be = Rand<F>(rng, 1, C);
                IBackend<F> ops = CpuBackend<F>.Instance;
                Tensor<F> r1 = new(N, C), y1 = new(N, C), mu1 = new(N), rs1 = new(N), r2 = new(N, C), y2 = new(N, C), mu2 = new(N), rs2 = new(N);
                ops.ResidualForward(r1, a, b, N * C);
                ops.LayerNormForward(y1, mu1, rs1, r1, g, be, N, C, 1e-5);
                ops.ResidualLayerNormForward(r2, y2, mu2, rs2, a, b, g, be, N, C, 1e-5);
                AssertBitEqual(r1, r2, "resid"); AssertBitEqual(y1, y2, "y"); AssertBitEqual(mu1, mu2, "mean"); AssertBitEqual(rs1, rs2, "rstd");
            }
        }
    }

    [Theory]
    [InlineData(WeightLayout.InOut, true)]
    [InlineData(WeightLayout.OutIn, false)]
    public void MatmulGelu_matches_matmul_then_gelu(WeightLayout layout, bool bias)
    {
        Check<float>(1e-6); Check<double>(1e-14);
        void Check<F>(double tol) where F : unmanaged, IFloatingPointIeee754<F>
        {
            foreach (var (N, K, M) in new[] { (5, 7, 19), (64, 96, 200) })
            {
                var rng = new Random(N + K + M);
                var x = Rand<F>(rng, 1, N, K); var w = Rand<F>(rng, 0.5, K * M); var b = bias ? Rand<F>(rng, 1, M) : null;
                IBackend<F> ops = CpuBackend<F>.Instance;
                Tensor<F> pre1 = new(N, M), post1 = new(N, M), pre2 = new(N, M), post2 = new(N, M);
                ops.MatmulForward(pre1, x, w, b, N, K, M, layout);
                ops.GeluForward(post1, pre1, N * M, GeluForm.Tanh);
                ops.MatmulGeluForward(pre2, post2, x, w, b, N, K, M, layout, GeluForm.Tanh);
                Numerics.AssertClose([("pre", Numerics.ToDoubles<F>(pre2.Span), Numerics.ToDoubles<F>(pre1.Span)),
                                      ("post", Numerics.ToDoubles<F>(post2.Span), Numerics.ToDoubles<F>(post1.Span))], tol);
                // erf form goes through the composed path
                ops.MatmulGeluForward(pre2, post2, x, w, b, N, K, M, layout, GeluForm.Erf);
                ops.GeluForward(post1, pre1, N * M, GeluForm.Erf);
                Numerics.AssertClose([("post-erf", Numerics.ToDoubles<F>(post2.Span), Numerics.ToDoubles<F>(post1.Span))], tol);
            }
        }
    }

    [Fact]
    public void Gelu_tanh_single_sweep_matches_the_textbook_formula_including_extremes()
    {
        double[] xs = [.. Enumerable.Range(0, 4001).Select(i => (i - 2000) / 100.0), 1e-30, -1e-30, 0, 50, -50, 300, -300, 1e-8, -1e-8];
        int n = xs.Length;
        var x64 = new Tensor<double>(xs, n); var y64 = new Tensor<double>(n); var dx64 = new Tensor<double>(n);
        var x32 = new Tensor<float>([.. xs.Select(v => (float)v)], n); var y32 = new Tensor<float>(n); var dx32 = new Tensor<float>(n);
        var ones64 = new Tensor<double>(Enumerable.Repeat(1.0, n).ToArray(), n);
        var ones32 = new Tensor<float>(Enumerable.Repeat(1f, n).ToArray(), n);
        CpuBackend<double>.Instance.GeluForward(y64, x64, n, GeluForm.Tanh);
        CpuBackend<double>.Instance.GeluBackward(dx64, ones64, x64, n, GeluForm.Tanh);
        CpuBackend<float>.Instance.GeluForward(y32, x32, n, GeluForm.Tanh);
        CpuBackend<float>.Instance.GeluBackward(dx32, ones32, x32, n, GeluForm.Tanh);
        double k = Math.Sqrt(2 / Math.PI);
        for (int i = 0; i < n; i++)
        {
            double x = xs[i], u = k * (x + 0.044715 * x * x * x), th = Math.Tanh(u);
            double y = 0.5 * x * (1 + th);
            double d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * 0.044715 * x * x);
            Assert.True(Math.Abs(y64.Data[i] - y) <= 1e-14 * Math.Max(1, Math.Abs(y)), $"f64 y({x}) = {y64.Data[i]} vs {y}");
            Assert.True(Math.Abs(dx64.Data[i] - d) <= 1e-13 * Math.Max(1, Math.Abs(d)), $"f64 dy({x}) = {dx64.Data[i]} vs {d}");
            Assert.True(Math.Abs(y32.Data[i] - y) <= 2e-6 * Math.Max(1, Math.Abs(y)), $"f32 y({x}) = {y32.Data[i]} vs {y}");
            Assert.True(Math.Abs(dx32.Data[i] - d) <= 2e-6 * Math.Max(1, Math.Abs(d)), $"f32 dy({x}) = {dx32.Data[i]} vs {d}");
        }
    }

    [Fact]
    public void CrossEntropy_at_gpt2_vocabulary_matches_float64_and_may_alias()
    {
        const int N = 6, V = 50257;
        var rng = new Random(5);
        var l64 = Rand<double>(rng, 8, N, V);
        var l32 = new Tensor<float>([.. l64.Data.Select(v => (float)v)], N, V);
        for (int i = 0; i < l64.Length; i++) l64.Data[i] = l32.Data[i];
        int[] tg = [3, -100, 50256, 0, 777, 12345];
        var lse64 = new Tensor<double>(N); var lse32 = new Tensor<float>(N);
        var (s64, c64) = CpuBackend<double>.Instance.CrossEntropyForward(lse64, l64, tg, N, V);
        var (s32, c32) = CpuBackend<float>.Instance.CrossEntropyForward(lse32, l32, tg, N, V);
        Assert.Equal(5, c64); Assert.Equal(5, c32);
        // float64 reference written out directly
        double refSum = 0;
        for (int n = 0; n < N; n++)
        {
            var row = l64.Data.AsSpan(n * V, V);
            double mx = double.NegativeInfinity;
            foreach (double v in row) mx = Math.Max(mx, v);
            double s = 0;
            foreach (double v in row) s += Math.Exp(v - mx);
            double lse = mx + Math.Log(s);
            Assert.True(Math.Abs(lse64.Data[n] - lse) < 1e-12 * Math.Abs(lse), $"lse row {n}");
            if (tg[n] != -100) refSum += lse - row[tg[n]];
        }
        Assert.True(Math.Abs(s64 - refSum) < 1e-11 * Math.Abs(refSum));
        Assert.True(Math.Abs(s32 - refSum) < 1e-5 * Math.Abs(refSum));
        var d64 = new Tensor<double>(N, V);
        CpuBackend<double>.Instance.CrossEntropyBackward(d64, l64, lse64, tg, N, V, 0.5);
        CpuBackend<float>.Instance.CrossEntropyBackward(l32, l32, lse32, tg, N, V, 0.5);   // aliasing: in place
        Numerics.AssertClose([("dlogits", Numerics.ToDoubles<float>(l32.Span), d64.Data)], 1e-5);
        for (int n = 0; n < N; n++)
        {
            double rowSum = 0;
            for (int v = 0; v < V; v++) rowSum += d64.Data[n * V + v];
            Assert.True(Math.Abs(rowSum) < 1e-12, $"row {n} of dlogits sums to {rowSum}");   // softmax − onehot sums to 0
        }
    }

    [Fact]
    public void Profiling_backend_gives_the_same_model_results_and_names_every_op()
    {
        var cfg = new Gpt2Config(37, 16, 24, 2, 3);
        var a = new Gpt2<double>(cfg, CpuBackend<double>.Instance);
        var prof = new ProfilingBackend<double>(CpuBackend<double>.Instance);
        var b = new Gpt2<double>(cfg, prof);
        a.InitializeRandom(3); b.InitializeRandom(3);
        int[] ids = [1, 2, 3, 4, 5, 6, 7, 8], tg = [2, 3, 4, 5, 6, 7, 8, -100];
        var oa = new Optimizer<double>(a.Parameters, new OptimizerConfig(), CpuBackend<double>.Instance);
        var ob = new Optimizer<double>(b.Parameters, new OptimizerConfig(), prof);
        for (int s = 0; s < 2; s++)
        {
            oa.ZeroGrad(); ob.ZeroGrad();
            var (la, ca) = a.Forward(ids, tg, 2, 4);
            var (lb, cb) = b.Forward(ids, tg, 2, 4);
            Assert.Equal(la, lb);
            a.Backward(1.0 / ca); b.Backward(1.0 / cb);
            Assert.Equal(oa.Update(1e-3), ob.Update(1e-3));
        }
        for (int i = 0; i < a.Parameters.Count; i++) AssertBitEqual(a.Parameters[i].Value, b.Parameters[i].Value, a.Parameters[i].Name);
        foreach (var op in new[] { "embedding.fwd", "layernorm.fwd", "attention.bwd", "gelu.bwd", "crossentropy.fwd", "optimizer.adamw+zero", "optimizer.sumsq" })
            Assert.Contains(op, prof.Totals.Keys);
        Assert.Contains(prof.Totals.Keys, k => k.StartsWith("matmul.bwd ", StringComparison.Ordinal));
    }

    [Fact]
    public void Optimizer_update_zeroes_gradients_and_ZeroGrad_still_clears_gradients_written_after()
    {
        var cfg = new Gpt2Config(37, 16, 24, 2, 3);
        var m = new Gpt2<float>(cfg, CpuBackend<float>.Instance);
        m.InitializeRandom(1);
        var opt = new Optimizer<float>(m.Parameters, new OptimizerConfig(), CpuBackend<float>.Instance);
        int[] ids = [1, 2, 3, 4], tg = [2, 3, 4, 5];
        opt.ZeroGrad();
        var (_, c) = m.Forward(ids, tg, 1, 4);
        m.Backward(1.0 / c);
        Assert.True(opt.GradNorm() > 0);
        opt.Update(1e-3);
        Assert.Equal(0, opt.GradNorm());
        // gradients written after Update (a backward, or by hand) are cleared by the next ZeroGrad
        m.Forward(ids, tg, 1, 4);
        m.Backward(1.0 / c);
        m.Parameters[^1].Grad.Data[^1] = 1f;
        opt.ZeroGrad();
        Assert.Equal(0, opt.GradNorm());
        opt.ZeroGrad();
        Assert.Equal(0, opt.GradNorm());
    }
}
