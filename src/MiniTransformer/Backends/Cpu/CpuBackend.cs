using System.Numerics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.Intrinsics;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends.Cpu;

/// <summary>
/// The CPU implementation of the op set, generic over float and double. Row-wise work is split over
/// threads with <see cref="Parallelism.For"/>; reductions into parameter gradients are split by column so that each
/// element is summed over rows in a fixed order (deterministic). Inner loops use TensorPrimitives (Vector512/256).
/// </summary>
public sealed partial class CpuBackend<F> : IBackend<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    public static readonly CpuBackend<F> Instance = new();

    public string Name => $"cpu-{(typeof(F) == typeof(float) ? "f32" : "f64")}";

    static F Cast(double v) => F.CreateTruncating(v);

    // Columns per chunk when a reduction over rows is split by column (a multiple of the widest vector).
    const int ColumnGrain = 64;

    // Memory-light maps (layernorm, residual, bias) below this many elements run on the calling thread: handing
    // 200k elements to a second core costs more than the sweep itself, and far more when the machine is busy.
    const int LightElements = 1 << 17;

    static int RowGrain(int C) => Math.Max(1, LightElements / Math.Max(C, 1));

    /// <summary>Column-chunk grain for a reduction over N rows of width C: one chunk when the whole job is light.</summary>
    static int ColumnGrainFor(int N, int C) => (long)N * C < LightElements ? Math.Max(C, 1) : ColumnGrain;

    // ================= embedding =================

    public void EmbeddingForward(Tensor<F> x, ReadOnlySpan<int> ids, ReadOnlySpan<int> types,
        Tensor<F> wte, Tensor<F> wpe, Tensor<F>? wtt, int B, int T, int C)
    {
        var xs = x.Span;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
            {
                int n = b * T + t;
                var row = xs.Slice(n * C, C);
                TensorPrimitives.Add(wte.Span.Slice(ids[n] * C, C), wpe.Span.Slice(t * C, C), row);
                if (wtt is not null)
                    TensorPrimitives.Add(row, wtt.Span.Slice((types.IsEmpty ? 0 : types[n]) * C, C), row);
            }
    }

    public void EmbeddingBackward(Tensor<F> dWte, Tensor<F> dWpe, Tensor<F>? dWtt, Tensor<F> dx,
        ReadOnlySpan<int> ids, ReadOnlySpan<int> types, int B, int T, int C)
    {
        // Scatter-add in (b, t) order: rows of dWte hit by several tokens accumulate in a fixed order.
        var d = dx.Span;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
            {
                int n = b * T + t;
                var g = d.Slice(n * C, C);
                var we = dWte.Span.Slice(ids[n] * C, C);
                TensorPrimitives.Add(we, g, we);
                var wp = dWpe.Span.Slice(t * C, C);
                TensorPrimitives.Add(wp, g, wp);
                if (dWtt is not null)
                {
                    var wt = dWtt.Span.Slice((types.IsEmpty ? 0 : types[n]) * C, C);
                    TensorPrimitives.Add(wt, g, wt);
                }
            }
    }

    // ================= layernorm =================

    public void LayerNormForward(Tensor<F> y, Tensor<F> mean, Tensor<F> rstd, Tensor<F> x,
        Tensor<F> gamma, Tensor<F> beta, int N, int C, double eps)
    {
        F tc = F.CreateTruncating(C), te = Cast(eps);
        Parallelism.For(N, RowGrain(C), (lo, hi) =>
        {
            for (int n = lo; n < hi; n++)
            {
                // y = x − μ; biased variance (as torch); x̂ = (x − μ)·rstd; y = x̂·γ + β
                LayerNormRow(x.Data.AsSpan(n * C, C), y.Data.AsSpan(n * C, C), gamma.Data, beta.Data, tc, te,
                    out mean.Data[n], out rstd.Data[n]);
            }
        });
    }

    public void LayerNormBackward(Tensor<F> dx, Tensor<F> dGamma, Tensor<F> dBeta, Tensor<F> dy, Tensor<F> x,
        Tensor<F> gamma, Tensor<F> mean, Tensor<F> rstd, int N, int C)
    {
        F tc = F.CreateTruncating(C);
        // dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), with dx̂ = dy·γ, x̂ = (x − μ)·rstd. Two sweeps per row, no buffers.
        Parallelism.For(N, RowGrain(C), (lo, hi) =>
        {
            var g = gamma.Data.AsSpan(0, C);
            for (int n = lo; n < hi; n++)
            {
                var xr = x.Data.AsSpan(n * C, C);
                var dyr = dy.Data.AsSpan(n * C, C);
                var dxr = dx.Data.AsSpan(n * C, C);
                F mu = mean.Data[n], rs = rstd.Data[n];
                F sumD = F.Zero, sumDX = F.Zero;
                int i = 0;
                if (V512)
                {
                    var vmu = Vector512.Create(mu); var vrs = Vector512.Create(rs);
                    Vector512<F> aD = Vector512<F>.Zero, aDX = Vector512<F>.Zero;
                    for (; i <= C - W; i += W)
                    {
                        var d = Vector512.Create<F>(dyr.Slice(i)) * Vector512.Create<F>(g.Slice(i));
                        var xh = (Vector512.Create<F>(xr.Slice(i)) - vmu) * vrs;
                        aD += d; aDX += d * xh;
                    }
                    sumD = Vector512.Sum(aD); sumDX = Vector512.Sum(aDX);
                }
                for (; i < C; i++)
                {
                    F d = dyr[i] * g[i];
                    sumD += d; sumDX += d * (xr[i] - mu) * rs;
                }
                F meanD = sumD / tc, meanDX = sumDX / tc;
                i = 0;
                if (V512)
                {
                    var vmu = Vector512.Create(mu); var vrs = Vector512.Create(rs);
                    var vmD = Vector512.Create(meanD); var vmDX = Vector512.Create(meanDX);
                    for (; i <= C - W; i += W)
                    {
                        var d = Vector512.Create<F>(dyr.Slice(i)) * Vector512.Create<F>(g.Slice(i));
                        var xh = (Vector512.Create<F>(xr.Slice(i)) - vmu) * vrs;
                        (Vector512.Create<F>(dxr.Slice(i)) + (d - vmD - xh * vmDX) * vrs).CopyTo(dxr.Slice(i));
                    }
                }
                for (; i < C; i++)
                    dxr[i] += (dyr[i] * g[i] - meanD - (xr[i] - mu) * rs * meanDX) * rs;
            }
        });
        // dγ += Σ_n dy·x̂, dβ += Σ_n dy — split by column, rows summed in order.
        Parallelism.For(C, ColumnGrainFor(N, C), (c0, c1) =>
        {
            int w = c1 - c0;
            var dG = dGamma.Data.AsSpan(c0, w);
            var dB = dBeta.Data.AsSpan(c0, w);
            for (int n = 0; n < N; n++)
            {
                var dyr = dy.Data.AsSpan(n * C + c0, w);
                var xr = x.Data.AsSpan(n * C + c0, w);
                F mu = mean.Data[n], rs = rstd.Data[n];
                int i = 0;
                if (V512)
                {
                    var vmu = Vector512.Create(mu); var vrs = Vector512.Create(rs);
                    for (; i <= w - W; i += W)
                    {
                        var d = Vector512.Create<F>(dyr.Slice(i));
                        (Vector512.Create<F>(dG.Slice(i)) + d * ((Vector512.Create<F>(xr.Slice(i)) - vmu) * vrs)).CopyTo(dG.Slice(i));
                        (Vector512.Create<F>(dB.Slice(i)) + d).CopyTo(dB.Slice(i));
                    }
                }
                for (; i < w; i++)
                {
                    dG[i] += dyr[i] * ((xr[i] - mu) * rs);
                    dB[i] += dyr[i];
                }
            }
        });
    }

    // ================= matmul =================

    public void MatmulForward(Tensor<F> y, Tensor<F> x, Tensor<F> w, Tensor<F>? b, int N, int K, int M, WeightLayout layout)
    {
        // InOut: W is [K,M]; OutIn: W is [M,K] and is read transposed.
        bool transB = layout == WeightLayout.OutIn;
        Gemm.Multiply<F>(false, transB, N, M, K, x.Data, K, w.Data, transB ? K : M, y.Data, M, accumulate: false);
        if (b is not null)
            Parallelism.For(N, RowGrain(M), (lo, hi) =>
            {
                for (int n = lo; n < hi; n++)
                {
                    var row = y.Data.AsSpan(n * M, M);
                    TensorPrimitives.Add(row, b.Span, row);
                }
            });
    }

    public void MatmulBackward(Tensor<F>? dx, Tensor<F> dW, Tensor<F>? db, Tensor<F> dy, Tensor<F> x, Tensor<F> w,
        int N, int K, int M, WeightLayout layout)
    {
        if (layout == WeightLayout.InOut)
        {
            // dx[N,K] += dy[N,M]·Wᵀ (W [K,M]);  dW[K,M] += xᵀ·dy
            if (dx is not null) Gemm.Multiply<F>(false, true, N, K, M, dy.Data, M, w.Data, M, dx.Data, K, accumulate: true);
            Gemm.Multiply<F>(true, false, K, M, N, x.Data, K, dy.Data, M, dW.Data, M, accumulate: true);
        }
        else
        {
            // dx[N,K] += dy[N,M]·W (W [M,K]);  dW[M,K] += dyᵀ·x
            if (dx is not null) Gemm.Multiply<F>(false, false, N, K, M, dy.Data, M, w.Data, K, dx.Data, K, accumulate: true);
            Gemm.Multiply<F>(true, false, M, K, N, dy.Data, M, x.Data, K, dW.Data, K, accumulate: true);
        }
        if (db is not null) ColumnSums(db, dy, N, M);
    }

    /// <summary>acc[j] += Σ_n a[n, j], split by column so each sum runs over rows in order.</summary>
    static void ColumnSums(Tensor<F> acc, Tensor<F> a, int N, int M) =>
        Parallelism.For(M, ColumnGrainFor(N, M), (c0, c1) =>
        {
            var dst = acc.Data.AsSpan(c0, c1 - c0);
            for (int n = 0; n < N; n++)
                TensorPrimitives.Add(dst, a.Data.AsSpan(n * M + c0, c1 - c0), dst);
        });

    // ================= attention =================

    // Per (batch, head): the three products are small GEMMs on strided views of qkv (no copies):
    // S = Q·Kᵀ written straight into the pattern buffer, softmax in place, Y = P·V; backward dP = dY·Vᵀ,
    // dV += Pᵀ·dY, dS = P ⊙ (dP − rowsum(P ⊙ dP))/√d_h, dQ += dS·K, dK += dSᵀ·Q. Each (b, h) owns disjoint slices of
    // y, att and dqkv, and runs on one thread, so the result does not depend on scheduling. The backward reads the
    // saved pattern (y and lse are saved for the CUDA backward, which recomputes the pattern instead).

    [ThreadStatic] static F[]? s_attScratch;

    public unsafe void AttentionForward(Tensor<F> y, Tensor<F>? att, Tensor<F> lse, Tensor<F> qkv, ReadOnlySpan<int> keyMask,
        int B, int T, int C, int NH, bool causal)
    {
        int hs = C / NH, C3 = 3 * C;
        F scale = F.One / F.Sqrt(F.CreateTruncating(hs));
        bool hasMask = !keyMask.IsEmpty;
        fixed (int* mp = keyMask)
        {
            int* mask = mp;
            Parallelism.For(B * NH, 1, (lo, hi) =>
            {
                Span<F> scratch = default;
                if (att is null)   // no pattern wanted: the probabilities go to a per-thread scratch
                {
                    if (s_attScratch is null || s_attScratch.Length < T * T) s_attScratch = new F[T * T];
                    scratch = s_attScratch.AsSpan(0, T * T);
                }
                for (int bh = lo; bh < hi; bh++)
                {
                    int b = bh / NH, h = bh % NH;
                    int qOff = b * T * C3 + h * hs;
                    var S = att is null ? scratch : att.Data.AsSpan(bh * T * T, T * T);
                    var L = lse.Data.AsSpan(bh * T, T);
                    // Causal: only the lower triangle of the scores is computed (tiles above the diagonal skipped).
                    Gemm.Multiply<F>(false, true, T, T, hs, qkv.Data.AsSpan(qOff), C3, qkv.Data.AsSpan(qOff + C), C3, S, T, accumulate: false,
                        causal ? GemmTriangle.LowerC : GemmTriangle.None);
                    for (int t = 0; t < T; t++)
                    {
                        var p = S.Slice(t * T, T);
                        int tEnd = causal ? t + 1 : T;
                        // scores s[t2] = q·k[t2]/√d_h (masked keys: −∞); then p = softmax(s); keys past the query: 0
                        var live = p.Slice(0, tEnd);
                        TensorPrimitives.Multiply(live, scale, live);
                        if (hasMask)
                            for (int t2 = 0; t2 < tEnd; t2++)
                                if (mask[b * T + t2] == 0) live[t2] = F.NegativeInfinity;
                        p.Slice(tEnd).Clear();
                        F max = TensorPrimitives.Max<F>(live);
                        if (F.IsNegativeInfinity(max)) { p.Clear(); L[t] = F.NegativeInfinity; continue; }   // every key masked: output 0
                        TensorPrimitives.Subtract(live, max, live);
                        TensorPrimitives.Exp(live, live);
                        F sum = TensorPrimitives.Sum<F>(live);
                        TensorPrimitives.Multiply(live, F.One / sum, live);
                        L[t] = max + F.Log(sum);
                    }
                    Gemm.Multiply<F>(false, false, T, hs, T, S, T, qkv.Data.AsSpan(qOff + 2 * C), C3,
                        y.Data.AsSpan(b * T * C + h * hs), C, accumulate: false, causal ? GemmTriangle.LowerA : GemmTriangle.None);
                }
            });
        }
    }

    public void AttentionBackward(Tensor<F> dqkv, Tensor<F> dy, Tensor<F> qkv, Tensor<F> y, Tensor<F>? att, Tensor<F> lse,
        ReadOnlySpan<int> keyMask, int B, int T, int C, int NH, bool causal)
    {
        if (att is null) throw new ArgumentNullException(nameof(att), "the CPU attention backward reads the saved pattern");
        int hs = C / NH, C3 = 3 * C;
        F scale = F.One / F.Sqrt(F.CreateTruncating(hs));
        Parallelism.For(B * NH, 1, (lo, hi) =>
        {
            if (s_attScratch is null || s_attScratch.Length < T * T) s_attScratch = new F[T * T];
            var dP = s_attScratch.AsSpan(0, T * T);
            for (int bh = lo; bh < hi; bh++)
            {
                int b = bh / NH, h = bh % NH;
                int qOff = b * T * C3 + h * hs, yOff = b * T * C + h * hs;
                var P = att.Data.AsSpan(bh * T * T, T * T);
                var dY = dy.Data.AsSpan(yOff);
                // A pattern with nothing above the diagonal (causal attention, or a bidirectional one that happens to be)
                // lets every product below skip the upper triangle: dP and dS are only needed below it, P and dS are
                // zero above it.
                bool lower = causal || IsLowerTriangular(P, T);
                // dP = dY·Vᵀ;  dV += Pᵀ·dY
                Gemm.Multiply<F>(false, true, T, T, hs, dY, C, qkv.Data.AsSpan(qOff + 2 * C), C3, dP, T, accumulate: false,
                    lower ? GemmTriangle.LowerC : GemmTriangle.None);
                if (lower)
                    for (int t = 0; t < T - 1; t++) dP.Slice(t * T + t + 1, T - t - 1).Clear();   // not computed; P is 0 there
                Gemm.Multiply<F>(true, false, T, hs, T, P, T, dY, C, dqkv.Data.AsSpan(qOff + 2 * C), C3, accumulate: true,
                    lower ? GemmTriangle.UpperA : GemmTriangle.None);
                // softmax backward: dS = P ⊙ (dP − Σ P·dP), then through s = q·k/√d_h
                for (int t = 0; t < T; t++)
                {
                    var p = P.Slice(t * T, T);
                    var d = dP.Slice(t * T, T);
                    F pdp = TensorPrimitives.Dot<F>(p, d);
                    TensorPrimitives.Subtract(d, pdp, d);
                    TensorPrimitives.Multiply(d, p, d);
                    TensorPrimitives.Multiply(d, scale, d);
                }
                // dQ += dS·K;  dK += dSᵀ·Q
                Gemm.Multiply<F>(false, false, T, hs, T, dP, T, qkv.Data.AsSpan(qOff + C), C3, dqkv.Data.AsSpan(qOff), C3, accumulate: true,
                    lower ? GemmTriangle.LowerA : GemmTriangle.None);
                Gemm.Multiply<F>(true, false, T, hs, T, dP, T, qkv.Data.AsSpan(qOff), C3, dqkv.Data.AsSpan(qOff + C), C3, accumulate: true,
                    lower ? GemmTriangle.UpperA : GemmTriangle.None);
            }
        });
    }

    /// <summary>True when every element of the T×T matrix above the diagonal is zero.</summary>
    static bool IsLowerTriangular(ReadOnlySpan<F> P, int T)
    {
        for (int t = 0; t < T - 1; t++)
            if (P.Slice(t * T + t + 1, T - t - 1).ContainsAnyExcept(F.Zero, F.NegativeZero))
                return false;
        return true;
    }

    // ================= gelu =================

    static readonly F Sqrt2OverPi = Cast(Math.Sqrt(2.0 / Math.PI));
    static readonly F GeluCubic = Cast(0.044715);
    static readonly F Half = Cast(0.5);
    static readonly F InvSqrt2 = Cast(1.0 / Math.Sqrt(2.0));
    static readonly F InvSqrt2Pi = Cast(1.0 / Math.Sqrt(2.0 * Math.PI));
    const int ElementGrain = 16384;

    public void GeluForward(Tensor<F> y, Tensor<F> x, int n, GeluForm form) =>
        Parallelism.For(n, ElementGrain, (lo, hi) =>
        {
            var xs = x.Data.AsSpan(lo, hi - lo);
            var ys = y.Data.AsSpan(lo, hi - lo);
            if (form == GeluForm.Tanh && V512)
                GeluTanhRow(xs, ys, default);   // one sweep: x·σ(2u)
            else if (form == GeluForm.Tanh)
            {
                // y = ½x(1 + tanh(u)), u = √(2/π)(x + 0.044715x³)
                TensorPrimitives.Multiply(xs, xs, ys);
                TensorPrimitives.Multiply(ys, GeluCubic, ys);
                TensorPrimitives.Add(ys, F.One, ys);
                TensorPrimitives.Multiply(ys, xs, ys);
                TensorPrimitives.Multiply(ys, Sqrt2OverPi, ys);
                TensorPrimitives.Tanh(ys, ys);
                TensorPrimitives.Add(ys, F.One, ys);
                TensorPrimitives.Multiply(ys, xs, ys);
                TensorPrimitives.Multiply(ys, Half, ys);
            }
            else
            {
                for (int i = 0; i < xs.Length; i++)
                    ys[i] = Half * xs[i] * (F.One + Erf(xs[i] * InvSqrt2));
            }
        });

    public void GeluBackward(Tensor<F> dx, Tensor<F> dy, Tensor<F> x, int n, GeluForm form) =>
        Parallelism.For(n, ElementGrain, (lo, hi) =>
        {
            var xs = x.Data.AsSpan(lo, hi - lo);
            var dys = dy.Data.AsSpan(lo, hi - lo);
            var dxs = dx.Data.AsSpan(lo, hi - lo);
            if (form == GeluForm.Tanh) { GeluTanhBackwardSpan(dxs, dys, xs); return; }
            for (int i = 0; i < xs.Length; i++)
            {
                F xi = xs[i], g;
                if (form == GeluForm.Tanh)
                {
                    // d/dx = ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)
                    F x2 = xi * xi;
                    F th = F.Tanh(Sqrt2OverPi * xi * (F.One + GeluCubic * x2));
                    g = Half * (F.One + th) + Half * xi * (F.One - th * th) * Sqrt2OverPi * (F.One + Cast(3.0) * GeluCubic * x2);
                }
                else
                {
                    // d/dx = Φ(x) + x·φ(x)
                    g = Half * (F.One + Erf(xi * InvSqrt2)) + xi * InvSqrt2Pi * F.Exp(-Half * xi * xi);
                }
                dxs[i] += g * dys[i];
            }
        });

    static F Erf(F v) => Cast(MathNet.Numerics.SpecialFunctions.Erf(double.CreateTruncating(v)));

    // ================= residual =================

    public void ResidualForward(Tensor<F> y, Tensor<F> a, Tensor<F> b, int n) =>
        Parallelism.For(n, LightElements, (lo, hi) =>
            TensorPrimitives.Add(a.Data.AsSpan(lo, hi - lo), b.Data.AsSpan(lo, hi - lo), y.Data.AsSpan(lo, hi - lo)));

    public void ResidualBackward(Tensor<F> da, Tensor<F> db, Tensor<F> dy, int n) =>
        Parallelism.For(n, LightElements, (lo, hi) =>
        {
            var g = dy.Data.AsSpan(lo, hi - lo);
            var a = da.Data.AsSpan(lo, hi - lo);
            var b = db.Data.AsSpan(lo, hi - lo);
            TensorPrimitives.Add(a, g, a);
            TensorPrimitives.Add(b, g, b);
        });

    // ================= softmax + cross-entropy =================

    public unsafe (double LossSum, int Count) CrossEntropyForward(Tensor<F> lse, Tensor<F> logits, ReadOnlySpan<int> targets, int N, int V)
    {
        if (targets.Length < N) throw new ArgumentException($"targets has {targets.Length} entries, expected {N}");
        // lse = max + log Σ exp(x − max), per row: two sweeps over the row, nothing written but lse.
        // The loss of row n is lse[n] − logit[target]; summed after, in row order (deterministic).
        fixed (int* tp = targets)
        {
            int* tgp = tp;
            Parallelism.For(N, 1, (lo, hi) =>
            {
                for (int n = lo; n < hi; n++)
                    lse.Data[n] = LogSumExp(logits.Data.AsSpan(n * V, V));
            });
            double sum = 0;
            int count = 0;
            for (int n = 0; n < N; n++)
            {
                int t = tgp[n];
                if (t == -100) continue;
                sum += double.CreateTruncating(lse.Data[n] - logits.Data[(long)n * V + t]);
                count++;
            }
            return (sum, count);
        }
    }

    static F LogSumExp(ReadOnlySpan<F> row)
    {
        F max = TensorPrimitives.Max<F>(row);
        if (!V512 || row.Length < 4 * W)
        {
            F s = F.Zero;
            foreach (F v in row) s += F.Exp(v - max);
            return max + F.Log(s);
        }
        var vm = Vector512.Create(max);
        Vector512<F> a0 = Vector512<F>.Zero, a1 = a0, a2 = a0, a3 = a0;
        int i = 0, n = row.Length;
        for (; i <= n - 4 * W; i += 4 * W)
        {
            a0 += Exp(Vector512.Create<F>(row.Slice(i)) - vm);
            a1 += Exp(Vector512.Create<F>(row.Slice(i + W)) - vm);
            a2 += Exp(Vector512.Create<F>(row.Slice(i + 2 * W)) - vm);
            a3 += Exp(Vector512.Create<F>(row.Slice(i + 3 * W)) - vm);
        }
        for (; i <= n - W; i += W) a0 += Exp(Vector512.Create<F>(row.Slice(i)) - vm);
        F sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        for (; i < n; i++) sum += F.Exp(row[i] - max);
        return max + F.Log(sum);
    }

    public unsafe void CrossEntropyBackward(Tensor<F> dlogits, Tensor<F> logits, Tensor<F> lse, ReadOnlySpan<int> targets,
        int N, int V, double scale)
    {
        if (targets.Length < N) throw new ArgumentException($"targets has {targets.Length} entries, expected {N}");
        F s = Cast(scale);
        fixed (int* tp = targets)
        {
            int* tgp = tp;
            Parallelism.For(N, 1, (lo, hi) =>
            {
                for (int n = lo; n < hi; n++)
                {
                    var d = dlogits.Data.AsSpan(n * V, V);
                    int t = tgp[n];
                    if (t == -100) { d.Clear(); continue; }
                    var x = logits.Data.AsSpan(n * V, V);
                    F l = lse.Data[n];
                    int i = 0;
                    if (V512)
                    {
                        // dlogits = scale·softmax in one sweep (may alias logits: each element read before written)
                        var vl = Vector512.Create(l); var vs = Vector512.Create(s);
                        for (; i <= V - W; i += W)
                            (Exp(Vector512.Create<F>(x.Slice(i)) - vl) * vs).CopyTo(d.Slice(i));
                    }
                    for (; i < V; i++) d[i] = F.Exp(x[i] - l) * s;
                    d[t] -= s;
                }
            });
        }
    }

    // ================= optimizer =================

    public void AdamW(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, in AdamWStep step) =>
        AdamWCore(param, grad, m, v, step, zeroGrad: false);

    void AdamWCore(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, in AdamWStep step, bool zeroGrad)
    {
        // PyTorch AdamW: p ← p(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
        // p ← p − lr·m̂/(√v̂ + ε), with m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ).
        F b1 = Cast(step.Beta1), b2 = Cast(step.Beta2), omb1 = Cast(1 - step.Beta1), omb2 = Cast(1 - step.Beta2);
        F decay = Cast(1 - step.LearningRate * step.WeightDecay);
        F stepSize = Cast(step.LearningRate / (1 - Math.Pow(step.Beta1, step.Step)));
        F invSqrtBc2 = Cast(1 / Math.Sqrt(1 - Math.Pow(step.Beta2, step.Step)));
        F eps = Cast(step.Epsilon), gs = Cast(step.GradScale);
        Parallelism.For(param.Length, ElementGrain, (lo, hi) =>
        {
            var p = param.Data.AsSpan(lo, hi - lo);
            var g = grad.Data.AsSpan(lo, hi - lo);
            var ms = m.Data.AsSpan(lo, hi - lo);
            var vs = v.Data.AsSpan(lo, hi - lo);
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i <= p.Length - Vector512<F>.Count; i += Vector512<F>.Count)
                {
                    var gi = Vector512.Create<F>(g.Slice(i)) * gs;
                    var mi = Vector512.Create<F>(ms.Slice(i)) * b1 + gi * omb1;
                    var vi = Vector512.Create<F>(vs.Slice(i)) * b2 + gi * gi * omb2;
                    var pi = Vector512.Create<F>(p.Slice(i)) * decay;
                    pi -= stepSize * mi / (Vector512.Sqrt(vi) * invSqrtBc2 + Vector512.Create(eps));
                    mi.CopyTo(ms.Slice(i)); vi.CopyTo(vs.Slice(i)); pi.CopyTo(p.Slice(i));
                    if (zeroGrad) Vector512<F>.Zero.CopyTo(g.Slice(i));
                }
            }
            for (; i < p.Length; i++)
            {
                F gi = g[i] * gs;
                ms[i] = b1 * ms[i] + omb1 * gi;
                vs[i] = b2 * vs[i] + omb2 * gi * gi;
                p[i] = p[i] * decay - stepSize * ms[i] / (F.Sqrt(vs[i]) * invSqrtBc2 + eps);
                if (zeroGrad) g[i] = F.Zero;
            }
        });
    }

    public void Sgd(Tensor<F> param, Tensor<F> grad, double learningRate, double weightDecay, double gradScale)
    {
        F decay = Cast(1 - learningRate * weightDecay), step = Cast(-learningRate * gradScale);
        Parallelism.For(param.Length, ElementGrain, (lo, hi) =>
        {
            var p = param.Data.AsSpan(lo, hi - lo);
            TensorPrimitives.Multiply(p, decay, p);
            TensorPrimitives.MultiplyAdd(grad.Data.AsSpan(lo, hi - lo), step, p, p);
        });
    }

    public double SumOfSquares(Tensor<F> g)
    {
        // Fixed chunks summed in order: the result does not depend on scheduling.
        const int chunk = 1 << 14;
        int chunks = (g.Length + chunk - 1) / chunk;
        var partial = new double[chunks];
        Parallelism.For(chunks, 8, (lo, hi) =>
        {
            for (int c = lo; c < hi; c++)
            {
                int start = c * chunk;
                partial[c] = double.CreateTruncating(TensorPrimitives.SumOfSquares<F>(g.Data.AsSpan(start, Math.Min(chunk, g.Length - start))));
            }
        });
        double s = 0;
        foreach (double p in partial) s += p;
        return s;
    }
}
