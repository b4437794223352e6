using System.Diagnostics;
using System.Numerics;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends;

/// <summary>
/// Wraps a backend and times every op call (wall clock, Stopwatch), keyed by op name (matmul is split by shape:
/// <c>matmul.fwd N×K×M</c>). Used by <c>mt bench train --profile</c> to show where a training step's time goes.
/// Not thread-safe: the engine calls ops from one thread. Around a device backend each op ends with the device
/// synchronized, so the time is the kernels', not their launches' (at the cost of the overlap a real step has).
/// </summary>
public sealed class ProfilingBackend<F>(IBackend<F> inner) : IBackend<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    readonly Dictionary<string, (double Ms, int Calls)> totals = [];
    readonly Action? synchronize = inner is Cuda.CudaBackend cuda ? cuda.Device.Synchronize : null;

    public string Name => inner.Name + "+profile";
    public IReadOnlyDictionary<string, (double Ms, int Calls)> Totals => totals;
    public void Reset() => totals.Clear();

    T Time<T>(string key, Func<T> f)
    {
        long t0 = Stopwatch.GetTimestamp();
        T r = f();
        synchronize?.Invoke();
        double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        totals[key] = totals.TryGetValue(key, out var o) ? (o.Ms + ms, o.Calls + 1) : (ms, 1);
        return r;
    }

    void Time(string key, Action f) => Time(key, () => { f(); return 0; });

    public void EmbeddingForward(Tensor<F> x, ReadOnlySpan<int> ids, ReadOnlySpan<int> types, Tensor<F> wte, Tensor<F> wpe, Tensor<F>? wtt, int B, int T, int C)
    {
        int[] i = ids.ToArray(), ty = types.ToArray();
        Time("embedding.fwd", () => inner.EmbeddingForward(x, i, ty, wte, wpe, wtt, B, T, C));
    }

    public void EmbeddingBackward(Tensor<F> dWte, Tensor<F> dWpe, Tensor<F>? dWtt, Tensor<F> dx, ReadOnlySpan<int> ids, ReadOnlySpan<int> types, int B, int T, int C)
    {
        int[] i = ids.ToArray(), ty = types.ToArray();
        Time("embedding.bwd", () => inner.EmbeddingBackward(dWte, dWpe, dWtt, dx, i, ty, B, T, C));
    }

    public void LayerNormForward(Tensor<F> y, Tensor<F> mean, Tensor<F> rstd, Tensor<F> x, Tensor<F> gamma, Tensor<F> beta, int N, int C, double eps) =>
        Time("layernorm.fwd", () => inner.LayerNormForward(y, mean, rstd, x, gamma, beta, N, C, eps));

    public void LayerNormBackward(Tensor<F> dx, Tensor<F> dGamma, Tensor<F> dBeta, Tensor<F> dy, Tensor<F> x, Tensor<F> gamma, Tensor<F> mean, Tensor<F> rstd, int N, int C) =>
        Time("layernorm.bwd", () => inner.LayerNormBackward(dx, dGamma, dBeta, dy, x, gamma, mean, rstd, N, C));

    public void MatmulForward(Tensor<F> y, Tensor<F> x, Tensor<F> w, Tensor<F>? b, int N, int K, int M, WeightLayout layout) =>
        Time($"matmul.fwd {N}x{K}x{M}", () => inner.MatmulForward(y, x, w, b, N, K, M, layout));

    public void MatmulBackward(Tensor<F>? dx, Tensor<F> dW, Tensor<F>? db, Tensor<F> dy, Tensor<F> x, Tensor<F> w, int N, int K, int M, WeightLayout layout) =>
        Time($"matmul.bwd {N}x{K}x{M}", () => inner.MatmulBackward(dx, dW, db, dy, x, w, N, K, M, layout));

    public void AttentionForward(Tensor<F> y, Tensor<F>? att, Tensor<F> lse, Tensor<F> qkv, ReadOnlySpan<int> keyMask, int B, int T, int C, int NH, bool causal)
    {
        int[] m = keyMask.ToArray();
        Time("attention.fwd", () => inner.AttentionForward(y, att, lse, qkv, m, B, T, C, NH, causal));
    }

    public void AttentionBackward(Tensor<F> dqkv, Tensor<F> dy, Tensor<F> qkv, Tensor<F> y, Tensor<F>? att, Tensor<F> lse,
        ReadOnlySpan<int> keyMask, int B, int T, int C, int NH, bool causal)
    {
        int[] m = keyMask.ToArray();
        Time("attention.bwd", () => inner.AttentionBackward(dqkv, dy, qkv, y, att, lse, m, B, T, C, NH, causal));
    }

    public bool AttentionBackwardReadsPattern => inner.AttentionBackwardReadsPattern;

    public void GeluForward(Tensor<F> y, Tensor<F> x, int n, GeluForm form) => Time("gelu.fwd", () => inner.GeluForward(y, x, n, form));
    public void GeluBackward(Tensor<F> dx, Tensor<F> dy, Tensor<F> x, int n, GeluForm form) => Time("gelu.bwd", () => inner.GeluBackward(dx, dy, x, n, form));
    public void ResidualForward(Tensor<F> y, Tensor<F> a, Tensor<F> b, int n) => Time("residual.fwd", () => inner.ResidualForward(y, a, b, n));
    public void ResidualBackward(Tensor<F> da, Tensor<F> db, Tensor<F> dy, int n) => Time("residual.bwd", () => inner.ResidualBackward(da, db, dy, n));

    public (double LossSum, int Count) CrossEntropyForward(Tensor<F> lse, Tensor<F> logits, ReadOnlySpan<int> targets, int N, int V)
    {
        int[] t = targets.ToArray();
        return Time("crossentropy.fwd", () => inner.CrossEntropyForward(lse, logits, t, N, V));
    }

    public void CrossEntropyBackward(Tensor<F> dlogits, Tensor<F> logits, Tensor<F> lse, ReadOnlySpan<int> targets, int N, int V, double scale)
    {
        int[] t = targets.ToArray();
        Time("crossentropy.bwd", () => inner.CrossEntropyBackward(dlogits, logits, lse, t, N, V, scale));
    }

    public void AdamW(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, in AdamWStep step)
    {
        var s = step;
        Time("optimizer.adamw", () => inner.AdamW(param, grad, m, v, s));
    }

    public void Sgd(Tensor<F> param, Tensor<F> grad, double learningRate, double weightDecay, double gradScale) =>
        Time("optimizer.sgd", () => inner.Sgd(param, grad, learningRate, weightDecay, gradScale));

    public double SumOfSquares(Tensor<F> g) => Time("optimizer.sumsq", () => inner.SumOfSquares(g));

    public void AdamWZeroGrad(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, in AdamWStep step, bool zeroGrad)
    {
        var s = step;
        Time("optimizer.adamw+zero", () => inner.AdamWZeroGrad(param, grad, m, v, s, zeroGrad));
    }

    public void SgdZeroGrad(Tensor<F> param, Tensor<F> grad, double learningRate, double weightDecay, double gradScale, bool zeroGrad) =>
        Time("optimizer.sgd+zero", () => inner.SgdZeroGrad(param, grad, learningRate, weightDecay, gradScale, zeroGrad));

    public void SgdMomentumZeroGrad(Tensor<F> param, Tensor<F> grad, Tensor<F> buf, double learningRate, double momentum, bool nesterov,
        double weightDecay, double gradScale) =>
        Time("optimizer.sgdm+zero", () => inner.SgdMomentumZeroGrad(param, grad, buf, learningRate, momentum, nesterov, weightDecay, gradScale));

    public void AddToColumns(Tensor<F> y, ReadOnlySpan<F> b, int N, int ld, int col0)
    {
        var copy = b.ToArray();   // a span cannot enter the timed lambda
        Time("symmetry.bias", () => inner.AddToColumns(y, copy, N, ld, col0));
    }

    public void Zero(Tensor<F> t) => Time("zero", () => inner.Zero(t));

    public void ResidualLayerNormForward(Tensor<F> resid, Tensor<F> y, Tensor<F> mean, Tensor<F> rstd, Tensor<F> a, Tensor<F> b,
        Tensor<F> gamma, Tensor<F> beta, int N, int C, double eps) =>
        Time("residual+layernorm.fwd", () => inner.ResidualLayerNormForward(resid, y, mean, rstd, a, b, gamma, beta, N, C, eps));

    public void MatmulGeluForward(Tensor<F> pre, Tensor<F> post, Tensor<F> x, Tensor<F> w, Tensor<F>? b, int N, int K, int M,
        WeightLayout layout, GeluForm form) =>
        Time($"matmul+gelu.fwd {N}x{K}x{M}", () => inner.MatmulGeluForward(pre, post, x, w, b, N, K, M, layout, form));
}
