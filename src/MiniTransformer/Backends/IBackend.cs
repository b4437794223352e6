using System.Numerics;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends;

/// <summary>How a linear map's weight is stored. y = x·W + b either way.</summary>
public enum WeightLayout
{
    /// <summary>W stored [in, out] (GPT-2's Conv1D): y = x·W.</summary>
    InOut,
    /// <summary>W stored [out, in] (torch Linear, BERT, a tied embedding used as output map): y = x·Wᵀ.</summary>
    OutIn,
}

public enum GeluForm
{
    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) — GPT-2.</summary>
    Tanh,
    /// <summary>0.5·x·(1 + erf(x/√2)) — BERT.</summary>
    Erf,
}

/// <summary>Hyper-parameters of one AdamW step (PyTorch's decoupled weight decay).</summary>
public readonly record struct AdamWStep(double LearningRate, double Beta1, double Beta2, double Epsilon,
    double WeightDecay, int Step, double GradScale = 1.0);

/// <summary>
/// The op set: every layer of GPT-2 and BERT as an explicit forward/backward pair (as in llm.c).
/// Conventions:
/// <list type="bullet">
/// <item>Shapes are passed explicitly; tensors are contiguous row-major. N = B·F rows of width C.</item>
/// <item>Every backward ACCUMULATES (+=) into its input and parameter gradients; callers zero them once per step.</item>
/// <item>Forward outputs are overwritten.</item>
/// </list>
/// </summary>
public interface IBackend<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    string Name { get; }

    // ---- embedding: x[b,t] = wte[ids[b,t]] + wpe[t] (+ wtt[types[b,t]]) ----
    void EmbeddingForward(Tensor<F> x, ReadOnlySpan<int> ids, ReadOnlySpan<int> types,
        Tensor<F> wte, Tensor<F> wpe, Tensor<F>? wtt, int B, int T, int C);
    void EmbeddingBackward(Tensor<F> dWte, Tensor<F> dWpe, Tensor<F>? dWtt, Tensor<F> dx,
        ReadOnlySpan<int> ids, ReadOnlySpan<int> types, int B, int T, int C);

    // ---- layernorm: y = (x − μ)·rstd·γ + β, saving μ and rstd per row ----
    void LayerNormForward(Tensor<F> y, Tensor<F> mean, Tensor<F> rstd, Tensor<F> x,
        Tensor<F> gamma, Tensor<F> beta, int N, int C, double eps);
    void LayerNormBackward(Tensor<F> dx, Tensor<F> dGamma, Tensor<F> dBeta, Tensor<F> dy, Tensor<F> x,
        Tensor<F> gamma, Tensor<F> mean, Tensor<F> rstd, int N, int C);

    // ---- matmul: y[N,M] = x[N,K]·W + b, W stored per layout ----
    void MatmulForward(Tensor<F> y, Tensor<F> x, Tensor<F> w, Tensor<F>? b, int N, int K, int M, WeightLayout layout);
    void MatmulBackward(Tensor<F>? dx, Tensor<F> dW, Tensor<F>? db, Tensor<F> dy, Tensor<F> x, Tensor<F> w,
        int N, int K, int M, WeightLayout layout);

    // ---- attention over packed qkv [B,T,3C] (q | k | v, heads contiguous within each) ----
    // keyMask [B,T] (1 keep, 0 pad) may be empty; causal masks keys after the query; a query row whose keys are all
    // masked gives 0. Forward writes y [B,T,C], lse [B,NH,T] (log Σ exp of each row's scaled scores; −∞ for a row with
    // every key masked) and, when att is not null, the probabilities (the attention pattern) [B,NH,T,T]. Backward takes
    // what forward saved: y, lse, and att where AttentionBackwardReadsPattern (else it may be null), with the same mask
    // and causal flag.
    void AttentionForward(Tensor<F> y, Tensor<F>? att, Tensor<F> lse, Tensor<F> qkv, ReadOnlySpan<int> keyMask,
        int B, int T, int C, int NH, bool causal);
    void AttentionBackward(Tensor<F> dqkv, Tensor<F> dy, Tensor<F> qkv, Tensor<F> y, Tensor<F>? att, Tensor<F> lse,
        ReadOnlySpan<int> keyMask, int B, int T, int C, int NH, bool causal);
    /// <summary>
    /// Whether <see cref="AttentionBackward"/> reads the saved pattern (the CPU backend). False: it recomputes the
    /// probabilities from qkv and lse (CUDA, flash-style), so a training forward need not write the pattern at all.
    /// </summary>
    bool AttentionBackwardReadsPattern => true;

    // ---- gelu ----
    void GeluForward(Tensor<F> y, Tensor<F> x, int n, GeluForm form);
    void GeluBackward(Tensor<F> dx, Tensor<F> dy, Tensor<F> x, int n, GeluForm form);

    // ---- prelu (symmetry-breaking MLP option): y = x (x > 0), a_f·x (x ≤ 0), per-feature slopes a [F] over rows [N,F] ----
    void PreluForward(Tensor<F> y, Tensor<F> x, Tensor<F> slopes, int N, int Fdim)
    {
        var xs = x.Data; var ys = y.Data; var a = slopes.Data;
        System.Threading.Tasks.Parallel.For(0, N, n =>
        {
            int o = n * Fdim;
            for (int f = 0; f < Fdim; f++) { F v = xs[o + f]; ys[o + f] = v > F.Zero ? v : a[f] * v; }
        });
    }
    /// <summary>dx += dy·(x &gt; 0 ? 1 : a_f); da_f += Σ_n dy·x over x ≤ 0 (accumulates; the slope sum in float64, rows in order).</summary>
    void PreluBackward(Tensor<F> dx, Tensor<F> dslopes, Tensor<F> dy, Tensor<F> x, Tensor<F> slopes, int N, int Fdim)
    {
        var xs = x.Data; var dys = dy.Data; var dxs = dx.Data; var a = slopes.Data; var da = dslopes.Data;
        System.Threading.Tasks.Parallel.For(0, N, n =>
        {
            int o = n * Fdim;
            for (int f = 0; f < Fdim; f++) { F v = xs[o + f]; dxs[o + f] += v > F.Zero ? dys[o + f] : a[f] * dys[o + f]; }
        });
        System.Threading.Tasks.Parallel.For(0, Fdim, f =>
        {
            double s = 0;
            for (int n = 0; n < N; n++) { int i = n * Fdim + f; if (!(xs[i] > F.Zero)) s += double.CreateTruncating(dys[i] * xs[i]); }
            da[f] += F.CreateTruncating(s);
        });
    }

    // ---- residual: y = a + b ----
    void ResidualForward(Tensor<F> y, Tensor<F> a, Tensor<F> b, int n);
    void ResidualBackward(Tensor<F> da, Tensor<F> db, Tensor<F> dy, int n);

    // ---- fused softmax + cross-entropy, targets == -100 ignored ----
    // Saves lse[N] = log Σ exp(logits) per row; returns Σ loss over scored rows and their count.
    (double LossSum, int Count) CrossEntropyForward(Tensor<F> lse, Tensor<F> logits, ReadOnlySpan<int> targets, int N, int V);
    // dlogits = scale·(softmax(logits) − onehot(target)) on scored rows, 0 on ignored rows (overwrites; may alias logits).
    void CrossEntropyBackward(Tensor<F> dlogits, Tensor<F> logits, Tensor<F> lse, ReadOnlySpan<int> targets,
        int N, int V, double scale);

    // ---- optimizer and gradient norm ----
    void AdamW(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, in AdamWStep step);
    void Sgd(Tensor<F> param, Tensor<F> grad, double learningRate, double weightDecay, double gradScale);
    /// <summary>Σ g² over the tensor: fixed chunks summed in the tensor's precision, chunk totals added in float64.</summary>
    double SumOfSquares(Tensor<F> g);

    /// <summary>
    /// Σ over the tensors of <see cref="SumOfSquares"/>, added in float64 in list order (the global gradient norm).
    /// A device backend overrides it to read all the partial sums back in one copy.
    /// </summary>
    double SumOfSquaresAll(IReadOnlyList<Tensor<F>> gs)
    {
        double s = 0;
        foreach (var g in gs) s += SumOfSquares(g);
        return s;
    }

    // ---- fused ops (added for speed; default implementations compose the ops above, backends may do better) ----

    /// <summary>
    /// <see cref="AdamW"/> and then, when <paramref name="zeroGrad"/>, grad ← 0, in one pass over the four tensors
    /// (the training step's memory-bound sweep). Bit-identical to AdamW followed by clearing the gradient.
    /// </summary>
    void AdamWZeroGrad(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, in AdamWStep step, bool zeroGrad)
    {
        AdamW(param, grad, m, v, step);
        if (zeroGrad) grad.Clear();
    }

    /// <summary><see cref="Sgd"/> and then, when <paramref name="zeroGrad"/>, grad ← 0, in one pass.</summary>
    void SgdZeroGrad(Tensor<F> param, Tensor<F> grad, double learningRate, double weightDecay, double gradScale, bool zeroGrad)
    {
        Sgd(param, grad, learningRate, weightDecay, gradScale);
        if (zeroGrad) grad.Clear();
    }

    /// <summary>
    /// SGD with momentum (PyTorch's, Nesterov optional; <see cref="Training.SgdMomentum"/>) and then grad ← 0:
    /// g' = gradScale·g + wd·p, buf ← momentum·buf + g', p ← p − lr·(nesterov ? g' + momentum·buf : buf).
    /// </summary>
    void SgdMomentumZeroGrad(Tensor<F> param, Tensor<F> grad, Tensor<F> buf, double learningRate, double momentum, bool nesterov,
        double weightDecay, double gradScale) =>
        Training.SgdMomentum.Step(param, grad, buf, learningRate, momentum, nesterov, weightDecay, gradScale);

    /// <summary>
    /// y[n·ld + col0 + j] += b[j] for n &lt; N, j &lt; b.Length: a row vector added into a column block of a wider matrix
    /// (symmetry breaking's b_Q and b_V, added into the q and v blocks of the packed qkv).
    /// </summary>
    void AddToColumns(Tensor<F> y, ReadOnlySpan<F> b, int N, int ld, int col0)
    {
        var d = y.Span;
        for (int n = 0; n < N; n++)
        {
            var row = d.Slice(n * ld + col0, b.Length);
            System.Numerics.Tensors.TensorPrimitives.Add(row, b, row);
        }
    }

    /// <summary>Sets every element of t to zero (threaded where it pays).</summary>
    void Zero(Tensor<F> t) => t.Clear();

    /// <summary>
    /// Residual then layernorm in one pass: resid = a + b, y = LN(resid) (saving mean, rstd). Same results as
    /// <see cref="ResidualForward"/> followed by <see cref="LayerNormForward"/> on resid.
    /// </summary>
    void ResidualLayerNormForward(Tensor<F> resid, Tensor<F> y, Tensor<F> mean, Tensor<F> rstd, Tensor<F> a, Tensor<F> b,
        Tensor<F> gamma, Tensor<F> beta, int N, int C, double eps)
    {
        ResidualForward(resid, a, b, N * C);
        LayerNormForward(y, mean, rstd, resid, gamma, beta, N, C, eps);
    }

    /// <summary>
    /// pre = x·W + b and post = gelu(pre) (the MLP's first half; gelu applied in the matmul's epilogue). Same results
    /// as <see cref="MatmulForward"/> followed by <see cref="GeluForward"/>.
    /// </summary>
    void MatmulGeluForward(Tensor<F> pre, Tensor<F> post, Tensor<F> x, Tensor<F> w, Tensor<F>? b, int N, int K, int M,
        WeightLayout layout, GeluForm form)
    {
        MatmulForward(pre, x, w, b, N, K, M, layout);
        GeluForward(post, pre, N * M, form);
    }
}

/// <summary>
/// Optional ops of a backend that runs the gauge-fixed QKV projection itself (CUDA), instead of
/// <c>Gauge.FixedQkv</c>'s host path. qkv [N, 3C] packed [q | k | v]; W is GPT-2's Conv1D [C, 3C] (InOut) or BERT's
/// Linear [3C, C] (OutIn); write W(c, o) for the weight from input feature c to output o either way. Per head h:
/// q_h = x[:, P_h] + Σ_{c ∈ R_h} x[:, c]·W(c, Q_h) + b[Q_h], k = x·W(:, K), v_h = x[:, P'_h] + Σ_{c ∈ R'_h} x[:, c]·W(c, V_h)
/// (b_K, b_V fixed at 0). <paramref name="pivots"/> holds 2·NH sets of d_h = C/NH distinct rows (Q heads, then V heads;
/// entry j of head h's set feeds output h·d_h + j); R is the rest of 0…C−1. Backward accumulates dx, the free entries
/// of dW (Q and V), all of dW's K part, and db's Q part only.
/// </summary>
public interface IFixedQkvOps<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    void FixedQkvForward(Tensor<F> qkv, Tensor<F> x, Tensor<F> w, Tensor<F> b, int[][] pivots, int N, int C, int NH,
        WeightLayout layout);
    void FixedQkvBackward(Tensor<F> dx, Tensor<F> dW, Tensor<F> db, Tensor<F> dQkv, Tensor<F> x, Tensor<F> w,
        int[][] pivots, int N, int C, int NH, WeightLayout layout);
}

/// <summary>
/// Optional ops of a device backend for gauge-fixed training (<c>Optimizer.RestrictTo</c>), so the fixed entries' masks
/// and the free-entry updates run where the tensors live. <paramref name="free"/> / <paramref name="indices"/> are sorted
/// flat indices; the moments of a restricted parameter are compact (entry i belongs to parameter entry free[i]). The
/// updates are the ones of <see cref="IBackend{F}.AdamW"/> and <see cref="IBackend{F}.Sgd"/> on those entries; the other
/// entries are not touched.
/// </summary>
public interface IMaskedOptimizerOps<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    /// <summary>t[indices] ← 0.</summary>
    void ZeroEntries(Tensor<F> t, int[] indices);
    void MaskedAdamW(Tensor<F> param, Tensor<F> grad, Tensor<F> m, Tensor<F> v, int[] free, in AdamWStep step);
    void MaskedSgd(Tensor<F> param, Tensor<F> grad, int[] free, double learningRate, double weightDecay, double gradScale);
}
