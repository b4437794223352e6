using System.Numerics;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends.Cuda;

/// <summary>One self-test case: the largest relative error over its outputs and gradients, and whether it passed.</summary>
public sealed record SelfTestResult(string Op, string Case, double Error, double Tolerance, string Worst, double Ms)
{
    public bool Passed => Error <= Tolerance && !double.IsNaN(Error);
}

/// <summary>
/// Every op of the op set, forward and backward, on random inputs of odd and even shapes, on a backend under test
/// (float32) against the CPU backend in float64. Gradients start from random values, so accumulation is checked too;
/// forward outputs start as NaN, so an unwritten element fails. Relative error = ‖ours − ref‖ / max(‖ref‖, 1e-3·S), S the
/// largest reference norm of the case (as the CPU op tests). Used by the xunit tests and by <c>mt kernels selftest</c>
/// (the GPU machine has no test runner).
/// </summary>
public static class CudaSelfTest
{
    public const double Tolerance = 1e-5;
    /// <summary>Whole-model cases (a GPT-2 step, three training steps) in float32: many ops in sequence.</summary>
    public const double ModelTolerance = 1e-4;
    /// <summary>bf16 storage (8-bit mantissa, 2⁻⁹ relative rounding per stored value): single ops.</summary>
    public const double ToleranceBf16 = 1e-2;
    /// <summary>bf16 storage, whole-model cases: every activation and gradient rounded at each of a few dozen ops.</summary>
    public const double ModelToleranceBf16 = 5e-2;

    /// <summary>The tolerance of a case on a backend: float32 or bf16 storage, single op or whole model.</summary>
    public static double ToleranceFor(string op, bool bf16) =>
        op.StartsWith("gpt2", StringComparison.Ordinal) ? (bf16 ? ModelToleranceBf16 : ModelTolerance) : (bf16 ? ToleranceBf16 : Tolerance);

    /// <summary>The cases: (op, case name, run over float and over double).</summary>
    public static IEnumerable<(string Op, string Name, Func<IBackend<float>, List<(string, double[])>> F32,
        Func<IBackend<double>, List<(string, double[])>> F64)> Cases()
    {
        foreach (var (B, T, C, V, wtt) in new[] { (2, 5, 13, 7, true), (2, 5, 13, 7, false), (4, 32, 96, 50, true) })
            yield return Both("embedding", $"B{B} T{T} C{C} V{V}{(wtt ? " wtt" : "")}", be => Embedding(be, B, T, C, V, wtt));
        foreach (var (N, C) in new[] { (7, 13), (1, 5), (16, 64), (512, 200), (64, 768) })
            yield return Both("layernorm", $"N{N} C{C}", be => LayerNorm(be, N, C));
        foreach (var (N, K, M, lay, bias) in new[]
                 {
                     (7, 19, 23, WeightLayout.InOut, true), (7, 19, 23, WeightLayout.OutIn, true), (1, 5, 3, WeightLayout.OutIn, false),
                     (16, 64, 128, WeightLayout.InOut, true), (64, 96, 200, WeightLayout.OutIn, true), (130, 67, 129, WeightLayout.InOut, false),
                     (256, 256, 768, WeightLayout.InOut, true), (128, 256, 384, WeightLayout.OutIn, true),   // whole 128×128×32 tiles
                     (136, 64, 200, WeightLayout.OutIn, true), (136, 64, 200, WeightLayout.InOut, false),     // ragged edges, 16-byte rows (like GPT-2's vocabulary)
                 })
            yield return Both("matmul", $"N{N} K{K} M{M} {lay}{(bias ? " bias" : "")}", be => Matmul(be, N, K, M, lay, bias));
        foreach (var (B, T, C, NH, causal, masked) in new[]
                 {
                     (2, 5, 15, 3, true, false), (2, 16, 64, 4, true, false), (2, 1, 15, 3, true, false), (2, 5, 15, 3, false, false),
                     (3, 5, 15, 3, false, true), (3, 40, 64, 4, false, true), (3, 5, 15, 3, true, true), (2, 40, 64, 4, true, false),
                     (2, 70, 256, 2, true, false), (1, 33, 96, 1, false, true),
                     // the backward's tiles (64 queries × 64 keys for head size ≤ 64, 32 × 32 above): head sizes 32, 40, 64, 80,
                     // odd and even T over several tiles, padded key tiles skipped whole
                     (2, 129, 64, 2, true, false), (2, 66, 120, 3, true, true), (2, 65, 128, 2, true, false),
                     (3, 130, 128, 2, false, true), (3, 67, 240, 3, false, true), (2, 64, 160, 2, true, true),
                     // bf16 on tensor cores (head sizes that are multiples of 16; forward blocks of 128 queries for head
                     // size ≤ 64, 64 above; backward blocks of 64 rows streaming tiles of 64, or 32 for head size 128):
                     // several tiles of each with ragged ends, both shared-memory stages reused, padded key tiles skipped
                     // by whole warps, head sizes 16, 48 and 128 (zero-padded to 32, 64, 128), 64
                     (3, 200, 128, 2, true, true), (1, 150, 192, 3, false, false), (2, 50, 96, 2, true, false),
                     (3, 100, 256, 2, false, true), (3, 150, 32, 2, true, true),
                 })
            yield return Both("attention", $"B{B} T{T} C{C} NH{NH}{(causal ? " causal" : " bidir")}{(masked ? " masked" : "")}",
                be => Attention(be, B, T, C, NH, causal, masked));
        foreach (int n in new[] { 23, 128, 40001 })
            foreach (var form in new[] { GeluForm.Tanh, GeluForm.Erf })
                yield return Both("gelu", $"n{n} {form}", be => Gelu(be, n, form));
        foreach (var (N, Fd) in new[] { (7, 13), (33, 256), (300, 65) })
            yield return Both("prelu", $"N{N} F{Fd}", be => Prelu(be, N, Fd));
        foreach (int n in new[] { 23, 40001 })
            yield return Both("residual", $"n{n}", be => Residual(be, n));
        foreach (var (N, V) in new[] { (7, 29), (1, 3), (16, 128), (300, 301), (8, 50257) })
            yield return Both("crossentropy", $"N{N} V{V}", be => CrossEntropy(be, N, V));
        foreach (int n in new[] { 23, 40001 })
        {
            yield return Both("adamw", $"n{n}", be => AdamW(be, n));
            yield return Both("sgd", $"n{n}", be => Sgd(be, n));
            foreach (bool nesterov in new[] { true, false })
                yield return Both("sgdm", $"n{n}{(nesterov ? " nesterov" : "")}, 2 steps", be => SgdMomentum(be, n, nesterov));
            yield return Both("global norm", $"n{n}", be => SumSq(be, n));
        }
        // InOut: GPT-2's Conv1D [C, 3C], shared or per-head pivots; OutIn: BERT's Linear [3C, C] (shared pivots only)
        foreach (var (N, C, NH, shared, lay) in new[]
                 {
                     (7, 12, 3, true, WeightLayout.InOut), (7, 12, 3, false, WeightLayout.InOut), (33, 64, 4, true, WeightLayout.InOut),
                     (33, 64, 4, false, WeightLayout.InOut), (5, 8, 1, true, WeightLayout.InOut), (130, 96, 2, false, WeightLayout.InOut),
                     (70, 192, 3, true, WeightLayout.InOut), (7, 12, 3, true, WeightLayout.OutIn), (65, 96, 4, true, WeightLayout.OutIn),
                     (5, 8, 1, true, WeightLayout.OutIn),
                 })
            yield return Both("gauge-fixed qkv", $"N{N} C{C} H{NH} {lay} {(shared ? "shared" : "per-head")} pivots",
                be => FixedQkv(be, N, C, NH, shared, lay));
        yield return Both("residency", "host writes and reads between device ops", Residency);
        foreach (var kind in new[] { Training.OptimizerKind.AdamW, Training.OptimizerKind.Sgd })
            yield return Both("masked optimizer", $"{kind}: free entries only (gauge-fixed), 3 clipped steps",
                be => MaskedOptimizer(be, kind));
        yield return Both("gpt2 step", "L2 d64 H4 V67 B3 T17", be => Gpt2Step(be, 67, 64, 4, 2, 3, 17, tied: true));
        yield return Both("gpt2 step", "L1 d48 H3 V53 B2 T9 untied", be => Gpt2Step(be, 53, 48, 3, 1, 2, 9, tied: false));
        yield return Both("gpt2 step", "L2 d48 H3 V53 B2 T11 gauge-fixed", be => Gpt2Step(be, 53, 48, 3, 2, 2, 11, tied: true, gaugeFixed: true));
        yield return Both("gpt2 step", "L2 d48 H3 V53 B2 T11 b_Q+b_V sampled", be => Gpt2Step(be, 53, 48, 3, 2, 2, 11, tied: true, symmetry: true));
        foreach (var (N, W, col0, M) in new[] { (7, 45, 0, 15), (33, 192, 128, 64) })
            yield return Both("add to columns", $"N{N} ld{W} cols {col0}..{col0 + M - 1}", be => AddToColumns(be, N, W, col0, M));
        yield return Both("gpt2 train", "L2 d32 H4 V41 B2 T9, 3 AdamW steps (clip, zero-grad, norm)", be => Gpt2Train(be, 41, 32, 4, 2, 2, 9));
    }

    // A case is written once over AnyBackend; Both() runs it for float (the backend under test) and double (CPU).
    static (string, string, Func<IBackend<float>, List<(string, double[])>>, Func<IBackend<double>, List<(string, double[])>>) Both(
        string op, string name, Func<AnyBackend, List<(string, double[])>> body) =>
        (op, name, be => body(new AnyBackend(be)), be => body(new AnyBackend(be)));

    /// <summary>Either precision's backend behind one type, so each case is written once.</summary>
    public sealed class AnyBackend
    {
        readonly IBackend<float>? f; readonly IBackend<double>? d;
        public AnyBackend(IBackend<float> f) => this.f = f;
        public AnyBackend(IBackend<double> d) => this.d = d;
        public R Do<R>(Func<IBackend<float>, R> onF, Func<IBackend<double>, R> onD) => f is not null ? onF(f) : onD(d!);
    }

    static List<(string, double[])> Embedding(AnyBackend be, int B, int T, int C, int V, bool wtt) =>
        be.Do(f => Embedding<float>(f, B, T, C, V, wtt), d => Embedding<double>(d, B, T, C, V, wtt));
    static List<(string, double[])> LayerNorm(AnyBackend be, int N, int C) =>
        be.Do(f => LayerNorm<float>(f, N, C), d => LayerNorm<double>(d, N, C));
    static List<(string, double[])> Matmul(AnyBackend be, int N, int K, int M, WeightLayout l, bool bias) =>
        be.Do(f => Matmul<float>(f, N, K, M, l, bias), d => Matmul<double>(d, N, K, M, l, bias));
    static List<(string, double[])> Attention(AnyBackend be, int B, int T, int C, int NH, bool causal, bool masked) =>
        be.Do(f => Attention<float>(f, B, T, C, NH, causal, masked), d => Attention<double>(d, B, T, C, NH, causal, masked));
    static List<(string, double[])> Gelu(AnyBackend be, int n, GeluForm form) =>
        be.Do(f => Gelu<float>(f, n, form), d => Gelu<double>(d, n, form));
    static List<(string, double[])> Prelu(AnyBackend be, int N, int Fd) => be.Do(f => Prelu<float>(f, N, Fd), d => Prelu<double>(d, N, Fd));
    static List<(string, double[])> Residual(AnyBackend be, int n) => be.Do(f => Residual<float>(f, n), d => Residual<double>(d, n));
    static List<(string, double[])> CrossEntropy(AnyBackend be, int N, int V) =>
        be.Do(f => CrossEntropy<float>(f, N, V), d => CrossEntropy<double>(d, N, V));
    static List<(string, double[])> AdamW(AnyBackend be, int n) => be.Do(f => AdamW<float>(f, n), d => AdamW<double>(d, n));
    static List<(string, double[])> Sgd(AnyBackend be, int n) => be.Do(f => Sgd<float>(f, n), d => Sgd<double>(d, n));
    static List<(string, double[])> SumSq(AnyBackend be, int n) => be.Do(f => SumSq<float>(f, n), d => SumSq<double>(d, n));
    static List<(string, double[])> Gpt2Step(AnyBackend be, int V, int C, int NH, int L, int B, int T, bool tied, bool gaugeFixed = false,
        bool symmetry = false) =>
        be.Do(f => Gpt2Step<float>(f, V, C, NH, L, B, T, tied, gaugeFixed, symmetry), d => Gpt2Step<double>(d, V, C, NH, L, B, T, tied, gaugeFixed, symmetry));
    static List<(string, double[])> SgdMomentum(AnyBackend be, int n, bool nesterov) =>
        be.Do(f => SgdMomentum<float>(f, n, nesterov), d => SgdMomentum<double>(d, n, nesterov));
    static List<(string, double[])> AddToColumns(AnyBackend be, int N, int W, int col0, int M) =>
        be.Do(f => AddToColumns<float>(f, N, W, col0, M), d => AddToColumns<double>(d, N, W, col0, M));
    static List<(string, double[])> Gpt2Train(AnyBackend be, int V, int C, int NH, int L, int B, int T) =>
        be.Do(f => Gpt2Train<float>(f, V, C, NH, L, B, T), d => Gpt2Train<double>(d, V, C, NH, L, B, T));
    static List<(string, double[])> FixedQkv(AnyBackend be, int N, int C, int NH, bool shared, WeightLayout layout) =>
        be.Do(f => FixedQkv<float>(f, N, C, NH, shared, layout), d => FixedQkv<double>(d, N, C, NH, shared, layout));
    static List<(string, double[])> Residency(AnyBackend be) => be.Do(Residency<float>, Residency<double>);
    static List<(string, double[])> MaskedOptimizer(AnyBackend be, Training.OptimizerKind kind) =>
        be.Do(f => MaskedOptimizer<float>(f, kind), d => MaskedOptimizer<double>(d, kind));

    // ------------------------------------------------------------------ inputs

    static double[] Randn(int seed, int n, double scale = 1.0)
    {
        var rng = new Random(seed);
        var x = new double[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));   // float-representable
        }
        return x;
    }

    static Tensor<F> Tn<F>(double[] d, params int[] shape) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var t = new Tensor<F>(shape);
        for (int i = 0; i < d.Length; i++) t.Data[i] = F.CreateTruncating(d[i]);
        return t;
    }

    static Tensor<F> Nan<F>(params int[] shape) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var t = new Tensor<F>(shape);
        t.Data.AsSpan().Fill(F.NaN);
        return t;
    }

    static double[] D<F>(Tensor<F> t) where F : unmanaged, IFloatingPointIeee754<F> => t.Data.Select(double.CreateTruncating).ToArray();

    // ------------------------------------------------------------------ cases (each: forward, then backward into random-start grads)

    static List<(string, double[])> Embedding<F>(IBackend<F> be, int B, int T, int C, int V, bool table) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var rng = new Random(B * 1000 + T * 100 + C);
        int[] ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(V)).ToArray();
        int[] types = table ? Enumerable.Range(0, B * T).Select(_ => rng.Next(2)).ToArray() : [];
        var wte = Tn<F>(Randn(1, V * C), V, C);
        var wpe = Tn<F>(Randn(2, (T + 3) * C), T + 3, C);
        var wtt = table ? Tn<F>(Randn(3, 3 * C), 3, C) : null;
        var x = Nan<F>(B, T, C);
        be.EmbeddingForward(x, ids, types, wte, wpe, wtt, B, T, C);
        var dWte = Tn<F>(Randn(4, V * C), V, C);
        var dWpe = Tn<F>(Randn(5, (T + 3) * C), T + 3, C);
        var dWtt = table ? Tn<F>(Randn(6, 3 * C), 3, C) : null;
        be.EmbeddingBackward(dWte, dWpe, dWtt, Tn<F>(Randn(7, B * T * C), B, T, C), ids, types, B, T, C);
        var r = new List<(string, double[])> { ("x", D(x)), ("dwte", D(dWte)), ("dwpe", D(dWpe)) };
        if (dWtt is not null) r.Add(("dwtt", D(dWtt)));
        return r;
    }

    static List<(string, double[])> LayerNorm<F>(IBackend<F> be, int N, int C) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var xs = Randn(11, N * C);
        for (int i = 0; i < xs.Length; i++) xs[i] = (float)(xs[i] + 0.5 * (i / C % 3));
        var x = Tn<F>(xs, N, C);
        var gamma = Tn<F>(Randn(12, C).Select(v => (double)(float)(1 + 0.3 * v)).ToArray(), C);
        var beta = Tn<F>(Randn(13, C, 0.3), C);
        var (y, mean, rstd) = (Nan<F>(N, C), Nan<F>(N), Nan<F>(N));
        be.LayerNormForward(y, mean, rstd, x, gamma, beta, N, C, 1e-5);
        var dx = Tn<F>(Randn(14, N * C), N, C);
        var dg = Tn<F>(Randn(15, C), C);
        var db = Tn<F>(Randn(16, C), C);
        be.LayerNormBackward(dx, dg, db, Tn<F>(Randn(17, N * C), N, C), x, gamma, mean, rstd, N, C);
        return [("y", D(y)), ("mean", D(mean)), ("rstd", D(rstd)), ("dx", D(dx)), ("dgamma", D(dg)), ("dbeta", D(db))];
    }

    static List<(string, double[])> Matmul<F>(IBackend<F> be, int N, int K, int M, WeightLayout layout, bool bias) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var x = Tn<F>(Randn(21, N * K), N, K);
        var w = layout == WeightLayout.InOut ? Tn<F>(Randn(22, K * M, 0.2), K, M) : Tn<F>(Randn(22, K * M, 0.2), M, K);
        var b = bias ? Tn<F>(Randn(23, M), M) : null;
        var y = Nan<F>(N, M);
        be.MatmulForward(y, x, w, b, N, K, M, layout);
        var dx = Tn<F>(Randn(24, N * K), N, K);
        var dW = Tn<F>(Randn(25, K * M), w.Shape);
        var db = bias ? Tn<F>(Randn(26, M), M) : null;
        be.MatmulBackward(dx, dW, db, Tn<F>(Randn(27, N * M), N, M), x, w, N, K, M, layout);
        var r = new List<(string, double[])> { ("y", D(y)), ("dx", D(dx)), ("dW", D(dW)) };
        if (db is not null) r.Add(("db", D(db)));
        return r;
    }

    static List<(string, double[])> Attention<F>(IBackend<F> be, int B, int T, int C, int NH, bool causal, bool masked) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var qkv = Tn<F>(Randn(31, B * T * 3 * C), B, T, 3 * C);
        int[] mask = [];
        if (masked)
        {
            // row b keeps key 0 and keys below T − 1 − b·⌊T/2⌋ (so whole key tiles are padded in long rows); the last row
            // keeps none (every query fully masked)
            mask = new int[B * T];
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++)
                    mask[b * T + t] = b == B - 1 && B > 1 ? 0 : (t < T - 1 - b * (T / 2) || t == 0 ? 1 : 0);
        }
        var y = Nan<F>(B, T, C);
        var att = Nan<F>(B, NH, T, T);
        var lse = Nan<F>(B, NH, T);
        be.AttentionForward(y, att, lse, qkv, mask, B, T, C, NH, causal);
        // the training forward: no pattern; y and lse as with it. The backward gets the pattern only where it reads it.
        var y2 = Nan<F>(B, T, C);
        var lse2 = Nan<F>(B, NH, T);
        be.AttentionForward(y2, null, lse2, qkv, mask, B, T, C, NH, causal);
        var dqkv = Tn<F>(Randn(32, B * T * 3 * C), B, T, 3 * C);
        be.AttentionBackward(dqkv, Tn<F>(Randn(33, B * T * C), B, T, C), qkv, y2, be.AttentionBackwardReadsPattern ? att : null, lse2,
            mask, B, T, C, NH, causal);
        // lse is −∞ on fully masked rows: compared as 0 there (a finite or NaN value on either side still fails)
        static double[] Finite(Tensor<F> t) => [.. D(t).Select(v => double.IsNegativeInfinity(v) ? 0.0 : v)];
        double[] g = D(dqkv);
        double[] Part(int part)   // dq (0), dk (1) or dv (2) of the packed gradient
        {
            var r = new double[B * T * C];
            for (int n = 0; n < B * T; n++) Array.Copy(g, n * 3 * C + part * C, r, n * C, C);
            return r;
        }
        return [("y", D(y)), ("att", D(att)), ("lse", Finite(lse)), ("y without pattern", D(y2)), ("lse without pattern", Finite(lse2)),
            ("dq", Part(0)), ("dk", Part(1)), ("dv", Part(2))];
    }

    static List<(string, double[])> Gelu<F>(IBackend<F> be, int n, GeluForm form) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var x = Tn<F>(Randn(41, n, 2.0), n);
        var y = Nan<F>(n);
        be.GeluForward(y, x, n, form);
        var dx = Tn<F>(Randn(42, n), n);
        be.GeluBackward(dx, Tn<F>(Randn(43, n), n), x, n, form);
        return [("y", D(y)), ("dx", D(dx))];
    }

    static List<(string, double[])> Prelu<F>(IBackend<F> be, int N, int Fd) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var x = Tn<F>(Randn(45, N * Fd), N, Fd);                      // about half the entries ≤ 0
        var a = Tn<F>(Randn(46, Fd, 0.5).Select(v => (double)(float)(v + 0.2)).ToArray(), Fd);   // float-representable
        var y = Nan<F>(N, Fd);
        be.PreluForward(y, x, a, N, Fd);
        var dx = Tn<F>(Randn(47, N * Fd), N, Fd);
        var da = Tn<F>(Randn(48, Fd), Fd);
        be.PreluBackward(dx, da, Tn<F>(Randn(49, N * Fd), N, Fd), x, a, N, Fd);
        return [("y", D(y)), ("dx", D(dx)), ("dslopes", D(da))];
    }

    static List<(string, double[])> Residual<F>(IBackend<F> be, int n) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var y = Nan<F>(n);
        be.ResidualForward(y, Tn<F>(Randn(51, n), n), Tn<F>(Randn(52, n), n), n);
        var (da, db) = (Tn<F>(Randn(53, n), n), Tn<F>(Randn(54, n), n));
        be.ResidualBackward(da, db, Tn<F>(Randn(55, n), n), n);
        return [("y", D(y)), ("da", D(da)), ("db", D(db))];
    }

    static List<(string, double[])> CrossEntropy<F>(IBackend<F> be, int N, int V) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var rng = new Random(N * 7 + V);
        int[] targets = Enumerable.Range(0, N).Select(i => i % 3 == 2 ? -100 : rng.Next(V)).ToArray();
        var logits = Tn<F>(Randn(61, N * V, 2.0), N, V);
        var lse = Nan<F>(N);
        var (sum, count) = be.CrossEntropyForward(lse, logits, targets, N, V);
        var dl = Nan<F>(N, V);
        be.CrossEntropyBackward(dl, logits, lse, targets, N, V, 1.0 / Math.Max(count, 1));
        return [("loss", [sum / Math.Max(count, 1)]), ("count", [count]), ("lse", D(lse)), ("dlogits", D(dl))];
    }

    static List<(string, double[])> AdamW<F>(IBackend<F> be, int n) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var p = Tn<F>(Randn(71, n), n);
        var m = new Tensor<F>(n);
        var v = new Tensor<F>(n);
        for (int step = 1; step <= 3; step++)
            be.AdamW(p, Tn<F>(Randn(71 + step, n), n), m, v, new AdamWStep(1e-2, 0.9, 0.95, 1e-8, 0.1, step, 0.5));
        return [("p", D(p)), ("m", D(m)), ("v", D(v))];
    }

    static List<(string, double[])> Sgd<F>(IBackend<F> be, int n) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var p = Tn<F>(Randn(81, n), n);
        be.Sgd(p, Tn<F>(Randn(82, n), n), 0.1, 0.01, 0.5);
        return [("p", D(p))];
    }

    /// <summary>Two momentum steps (the buffer carries over), the gradient zeroed by each.</summary>
    static List<(string, double[])> SgdMomentum<F>(IBackend<F> be, int n, bool nesterov) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var p = Tn<F>(Randn(83, n), n);
        var buf = Tn<F>(new double[n], n);
        var g = Tn<F>(Randn(84, n), n);
        be.SgdMomentumZeroGrad(p, g, buf, 0.1, 0.9, nesterov, 0.01, 0.5);
        var after1 = D(g);
        g = Tn<F>(Randn(85, n), n);
        be.SgdMomentumZeroGrad(p, g, buf, 0.05, 0.9, nesterov, 0.01, 2.0);
        return [("p", D(p)), ("buf", D(buf)), ("grad after step 1", after1), ("grad after step 2", D(g))];
    }

    static List<(string, double[])> AddToColumns<F>(IBackend<F> be, int N, int W, int col0, int M) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var y = Tn<F>(Randn(86, N * W), N, W);
        var b = Randn(87, M).Select(F.CreateTruncating).ToArray();
        be.AddToColumns(y, b, N, W, col0);
        return [("y", D(y))];
    }

    static List<(string, double[])> SumSq<F>(IBackend<F> be, int n) where F : unmanaged, IFloatingPointIeee754<F> =>
        [("sumsq", [be.SumOfSquares(Tn<F>(Randn(91, n), n))])];

    /// <summary>
    /// Random pivot rows for a gauge-fixed projection: <paramref name="sets"/> sorted sets of dh distinct rows of [0, C),
    /// all the same when <paramref name="shared"/> (one set per layer, as Canonical.Fix chooses).
    /// </summary>
    static int[][] RandomPivots(Random rng, int sets, int C, int dh, bool shared)
    {
        int[] One() => [.. Enumerable.Range(0, C).OrderBy(_ => rng.Next()).Take(dh).Order()];
        var first = One();
        return [.. Enumerable.Range(0, sets).Select(i => shared || i == 0 ? first : One())];
    }

    /// <summary>
    /// The gauge-fixed QKV projection (<see cref="Gauge.FixedQkv{F}"/>): on a backend with its own kernels
    /// (<see cref="IFixedQkvOps{F}"/>, CUDA) those run; the CPU runs FixedQkv's host path, the reference. Inputs and
    /// starting gradients random; W need not hold the identity blocks (the projection ignores those entries).
    /// </summary>
    static List<(string, double[])> FixedQkv<F>(IBackend<F> be, int N, int C, int NH, bool shared, WeightLayout layout)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var block = new AttentionBlock<F>(be, "", C, NH, causal: true, layout, "c_attn", "c_proj");
        Randn(101, C * 3 * C, 0.2).Select(v => F.CreateTruncating(v)).ToArray().CopyTo(block.Wqkv.Value.Data, 0);
        Randn(102, 3 * C).Select(v => F.CreateTruncating(v)).ToArray().CopyTo(block.Bqkv.Value.Data, 0);
        var rng = new Random(N * 31 + C);
        var piv = RandomPivots(rng, 2 * NH, C, C / NH, shared);
        var proj = new Gauge.FixedQkv<F>(block, C, NH, piv[..NH], piv[NH..], layout);
        var x = Tn<F>(Randn(103, N * C), N, C);
        var qkv = Nan<F>(N, 3 * C);
        proj.Forward(qkv, x, N);
        var dx = Tn<F>(Randn(104, N * C), N, C);
        Randn(105, C * 3 * C).Select(v => F.CreateTruncating(v)).ToArray().CopyTo(block.Wqkv.Grad.Data, 0);
        Randn(106, 3 * C).Select(v => F.CreateTruncating(v)).ToArray().CopyTo(block.Bqkv.Grad.Data, 0);
        proj.Backward(dx, Tn<F>(Randn(107, N * 3 * C), N, 3 * C), x, N);
        return [("qkv", D(qkv)), ("dx", D(dx)), ("dW", D(block.Wqkv.Grad)), ("db", D(block.Bqkv.Grad))];
    }

    /// <summary>
    /// Host reads and writes between device ops (what the residency state machine must get right on a device backend):
    /// a host write to an input after a device op used it, a device op's output read on the host and then written there
    /// and fed back, an accumulating gradient zeroed through the backend and through <see cref="Tensor{T}.Clear"/>.
    /// </summary>
    static List<(string, double[])> Residency<F>(IBackend<F> be) where F : unmanaged, IFloatingPointIeee754<F>
    {
        const int N = 9, K = 13, M = 6;
        var x = Tn<F>(Randn(111, N * K), N, K);
        var w = Tn<F>(Randn(112, K * M, 0.3), K, M);
        var y1 = Nan<F>(N, M);
        be.MatmulForward(y1, x, w, null, N, K, M, WeightLayout.InOut);
        x.Data[3] += F.One;                                  // host write after the device used x
        w.Span[5] = F.CreateTruncating(-0.5);
        var y2 = Nan<F>(N, M);
        be.MatmulForward(y2, x, w, null, N, K, M, WeightLayout.InOut);
        double read = double.CreateTruncating(y2.HostView[7]);   // read-only host access: both copies stay current
        y2.Data[0] = F.CreateTruncating(2.5);                 // host write to a device op's output, then used as an input
        var y3 = Nan<F>(N, M);
        be.GeluForward(y3, y2, N * M, GeluForm.Tanh);
        var dW = Tn<F>(Randn(113, K * M), K, M);
        be.MatmulBackward(null, dW, null, y3, x, w, N, K, M, WeightLayout.InOut);
        be.Zero(dW);                                          // the optimizer's zero-grad
        be.MatmulBackward(null, dW, null, y2, x, w, N, K, M, WeightLayout.InOut);
        var dW2 = Tn<F>(Randn(114, K * M), K, M);
        be.MatmulBackward(null, dW2, null, y1, x, w, N, K, M, WeightLayout.InOut);
        dW2.Clear();                                          // the models' Clear() of an accumulator
        be.MatmulBackward(null, dW2, null, y3, x, w, N, K, M, WeightLayout.InOut);
        var c = dW2.Clone();
        be.ResidualForward(dW2, c, dW, K * M);               // output aliasing nothing, input a clone
        return [("y1", D(y1)), ("y2", D(y2)), ("read", [read]), ("y3", D(y3)), ("dW", D(dW)), ("dW2", D(dW2))];
    }

    /// <summary>
    /// Gauge-fixed training's optimizer path (<see cref="Training.Optimizer{F}.RestrictTo"/>): a matrix with a scattered
    /// set of fixed entries (including whole runs), a vector with none, a vector entirely fixed; three steps with random
    /// gradients, global-norm clipping active. On a device backend the fixed entries' masks and the free-entry updates
    /// run as its <see cref="IMaskedOptimizerOps{F}"/> kernels; on the CPU, the optimizer's own host path (the reference).
    /// </summary>
    static List<(string, double[])> MaskedOptimizer<F>(IBackend<F> be, Training.OptimizerKind kind) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var w = new Parameter<F>("w", Tn<F>(Randn(121, 37 * 29, 0.5), 37, 29));
        var b = new Parameter<F>("b", Tn<F>(Randn(122, 29, 0.5), 29));
        var c = new Parameter<F>("c", Tn<F>(Randn(123, 11, 0.5), 11));
        var ps = new[] { w, b, c };
        var rng = new Random(124);
        int[] wFree = [.. Enumerable.Range(0, 37 * 29).Where(i => !(i / 29 % 5 == 2 || rng.Next(7) == 0))];   // rows 2, 7, … and random entries fixed
        var opt = new Training.Optimizer<F>(ps, new Training.OptimizerConfig(Kind: kind, Epsilon: 1e-2, GradClip: 0.5, WeightDecay: 0.1), be);
        opt.RestrictTo([wFree, null, []]);
        var norms = new List<double>();
        for (int step = 0; step < 3; step++)
        {
            opt.ZeroGrad();
            foreach (var (p, k) in ps.Select((p, k) => (p, k)))
                Randn(130 + 10 * step + k, p.Value.Length, 0.3).Select(v => F.CreateTruncating(v)).ToArray().CopyTo(p.Grad.Data, 0);
            norms.Add(opt.Update(5e-2));
        }
        var r = new List<(string, double[])> { ("grad norm", [.. norms]), ("w", D(w.Value)), ("b", D(b.Value)), ("c", D(c.Value)) };
        if (kind == Training.OptimizerKind.AdamW) { r.Add(("m[w]", D(opt.M[0]))); r.Add(("v[w]", D(opt.V[0]))); }
        return r;
    }

    /// <summary>How the whole-model cases round their initial weights: to float32, or to bf16 when the backend under
    /// test stores bf16 (the weights it holds are then exactly the reference's). Set by <see cref="Run"/>.</summary>
    [ThreadStatic] static Func<float, float>? storageRoundOrNull;
    static Func<float, float> storageRound { get => storageRoundOrNull ?? (f => f); set => storageRoundOrNull = value; }

    static Gpt2<F> SmallGpt2<F>(IBackend<F> be, int V, int C, int NH, int L, int T, bool tied, bool symmetry = false)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var cfg = new Gpt2Config(V, T + 4, C, L, NH, 1e-5, null, tied,
            symmetry ? Models.SymmetryBreakingConfig.Create(C / NH, bq: true, bv: true) : null);
        var model = new Gpt2<F>(cfg, be);
        model.InitializeRandom(1234);
        // Round the weights to the storage under test (float, or bf16) so that both sides compute with the same model.
        foreach (var p in model.Parameters)
            for (int i = 0; i < p.Value.Length; i++) p.Value.Data[i] = F.CreateTruncating(storageRound((float)double.CreateTruncating(p.Value.Data[i])));
        return model;
    }

    /// <summary>Three training steps as the trainer takes them: zero-grad, forward, backward, clipped AdamW (norm on the backend).</summary>
    static List<(string, double[])> Gpt2Train<F>(IBackend<F> be, int V, int C, int NH, int L, int B, int T)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var model = SmallGpt2(be, V, C, NH, L, T, tied: true);
        // ε = 1e-2 keeps AdamW's update a smooth function of the gradient (with ε ≈ 0 it is ≈ sign(g) on the first step,
        // and float32 vs float64 rounding of a near-zero gradient would flip whole updates). Clip 0.5 makes the clip act.
        var opt = new Training.Optimizer<F>(model.Parameters, new Training.OptimizerConfig(Epsilon: 1e-2, GradClip: 0.5), be);
        var rng = new Random(V * 3 + C);
        var losses = new List<double>();
        var norms = new List<double>();
        for (int step = 0; step < 3; step++)
        {
            int[] ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(V)).ToArray();
            int[] targets = Enumerable.Range(0, B * T).Select(i => i % 4 == 3 ? -100 : rng.Next(V)).ToArray();
            opt.ZeroGrad();
            var (sum, count) = model.Forward(ids, targets, B, T);
            model.Backward(1.0 / count);
            losses.Add(sum / count);
            norms.Add(opt.Update(3e-2, sum / count));
        }
        var r = new List<(string, double[])> { ("loss", [.. losses]), ("grad norm", [.. norms]) };
        foreach (var p in model.Parameters) r.Add(("param/" + p.Name, D(p.Value)));
        r.Add(("m[0]", D(opt.M[0])));
        r.Add(("v[0]", D(opt.V[0])));
        return r;
    }

    static List<(string, double[])> Gpt2Step<F>(IBackend<F> be, int V, int C, int NH, int L, int B, int T, bool tied, bool gaugeFixed,
        bool symmetry) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var model = SmallGpt2(be, V, C, NH, L, T, tied, symmetry);
        if (symmetry) model.SetForwardMode(training: true, seed: 3, forwardIndex: 5);   // sampled b_Q, b_V (the same on both sides)
        if (gaugeFixed)
        {
            // shared pivots in layer 0 (the fast path), per-head pivots in the others
            var prng = new Random(C + L);
            var piv = Enumerable.Range(0, L).Select(l => RandomPivots(prng, 2 * NH, C, C / NH, shared: l == 0)).ToArray();
            Gauge.GaugeFixedTraining.InstallKernels(model, [.. piv.Select(p => p[..NH])], [.. piv.Select(p => p[NH..])]);
        }
        var rng = new Random(V + C);
        int[] ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(V)).ToArray();
        int[] targets = Enumerable.Range(0, B * T).Select(i => i % 5 == 4 ? -100 : rng.Next(V)).ToArray();
        var (sum, count) = model.Forward(ids, targets, B, T);
        foreach (var p in model.Parameters) p.Grad.Clear();
        model.Backward(1.0 / count);
        var r = new List<(string, double[])> { ("loss", [sum / count]), ("logits", D(model.Logits)) };
        foreach (var p in model.Parameters) r.Add(("grad/" + p.Name, D(p.Grad)));
        // read after the step: a backend whose backward does not read the pattern (CUDA) computes it only now
        r.Add(("pattern of the last layer", D(model.Layers[^1].Attn.Pattern)));
        return r;
    }

    // ------------------------------------------------------------------ running and comparing

    /// <summary>Runs every case on <paramref name="backend"/> and on the CPU in float64; compares each output.</summary>
    public static List<SelfTestResult> Run(IBackend<float> backend, Func<string, bool>? filter = null, Action<SelfTestResult>? progress = null)
    {
        var results = new List<SelfTestResult>();
        bool bf16 = backend is CudaBackend { Storage: DType.BF16 };
        storageRound = bf16 ? BFloat16.Round : f => f;
        foreach (var (op, name, f32, f64) in Cases())
        {
            if (filter is not null && !filter($"{op} {name}")) continue;
            var r = Compare(op, name, () => f32(backend), () => f64(CpuBackend<double>.Instance), ToleranceFor(op, bf16));
            results.Add(r);
            progress?.Invoke(r);
        }
        return results;
    }

    public static SelfTestResult Compare(string op, string name, Func<List<(string, double[])>> ours, Func<List<(string, double[])>> reference, double tol)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        List<(string, double[])> a;
        try { a = ours(); }
        catch (Exception e) when (e is not OutOfMemoryException)   // one broken case is a FAIL line, not the end of the run
        {
            string what = e is CudaException or InputException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            return new SelfTestResult(op, name, double.NaN, tol, what.Split('\n')[0], sw.Elapsed.TotalMilliseconds);
        }
        double ms = sw.Elapsed.TotalMilliseconds;
        var b = reference();
        double S = b.Max(x => Norm(x.Item2));
        double worst = 0;
        string worstName = "";
        foreach (var ((n, va), (_, vb)) in a.Zip(b))
        {
            double diff = 0;
            for (int i = 0; i < va.Length; i++) { double d = va[i] - vb[i]; diff += d * d; }
            double err = Math.Sqrt(diff) / Math.Max(Norm(vb), 1e-3 * S);
            if (double.IsNaN(err) || err > worst || double.IsNaN(worst)) { worst = double.IsNaN(err) ? double.NaN : err; worstName = n; }
            if (double.IsNaN(worst)) break;
        }
        return new SelfTestResult(op, name, worst, tol, worstName, ms);
    }

    static double Norm(double[] v) { double s = 0; foreach (double x in v) s += x * x; return Math.Sqrt(s); }
}
