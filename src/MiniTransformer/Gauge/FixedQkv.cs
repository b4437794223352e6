using System.Numerics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Models
{
    /// <summary>
    /// An alternative QKV projection for <see cref="AttentionBlock{F}"/> (null: the standard x·W_qkv + b_qkv). Forward
    /// overwrites qkv [N, 3C]; backward accumulates into dx and the block's parameter gradients.
    /// </summary>
    public interface IQkvProjection<F> where F : unmanaged, IFloatingPointIeee754<F>
    {
        void Forward(Tensor<F> qkv, Tensor<F> x, int N);
        void Backward(Tensor<F> dx, Tensor<F> dQkv, Tensor<F> x, int N);
    }
}

namespace MiniTransformer.Gauge
{
    /// <summary>
    /// The gauge-fixed QKV projection (GPT-2's Conv1D layout W_qkv [C, 3C]): per head, W_Q^h has the identity at its
    /// pivot rows P_h, so q_h = x[:, P_h] + x[:, R_h]·W′_h + b_Q^h with R_h the other C − d_h rows and W′_h = W_Q^h[R_h, :]
    /// packed contiguous; the same for v_h (b_V = 0); k = x·W_K (b_K = 0). The identity blocks cost no multiply-adds:
    /// forward and backward skip 2·d_h² per head and row for Q and V each. Gradients go only to the free entries
    /// (W′, W_K, b_Q); the fixed ones (identity blocks, b_K, b_V) get none.
    /// </summary>
    public sealed class FixedQkv<F> : IQkvProjection<F> where F : unmanaged, IFloatingPointIeee754<F>
    {
        readonly AttentionBlock<F> block;
        readonly int C, H, dh, R;
        readonly int[][] piv, rest;   // [2 (q, v)][head] flattened as piv[part * H + h]
        readonly F[][] packed, dPacked;
        F[] xr = [], dxr = [];
        /// <summary>Rows per task in the gathers and scatters (Parallelism.For's grain, in rows).</summary>
        const int Grain = 64;

        /// <param name="layout">How W_qkv is stored: GPT-2's Conv1D [C, 3C] (InOut) or BERT's Linear [3C, C] (OutIn, rows
        /// = output features; then the pivots must be shared by the layer's heads, as Canonical.Fix chooses them).</param>
        public FixedQkv(AttentionBlock<F> block, int C, int heads, int[][] qPivots, int[][] vPivots, WeightLayout layout = WeightLayout.InOut)
        {
            this.block = block; this.C = C; H = heads; dh = C / heads; R = C - dh;
            outIn = layout == WeightLayout.OutIn;
            piv = [.. qPivots, .. vPivots];
            rest = [.. piv.Select(p => Enumerable.Range(0, C).Except(p).ToArray())];
            packed = [.. piv.Select(_ => new F[R * dh])];
            dPacked = [.. piv.Select(_ => new F[R * dh])];
            if (piv.All(x => x.SequenceEqual(piv[0])))
            {
                shared = piv[0]; sharedRest = rest[0];
                wq = new F[R * C]; wv = new F[R * C]; dwq = new F[R * C]; dwv = new F[R * C];
            }
            else if (outIn) throw new InvalidOperationException("FixedQkv: [out, in] weights need one set of pivot rows per layer (Canonical.Fix's shared pivots)");
        }

        readonly bool outIn;
        WeightLayout Layout => outIn ? WeightLayout.OutIn : WeightLayout.InOut;

        // Shared pivots (one set for every head's Q and V in the layer, what Canonical.Fix chooses): x's free columns are
        // gathered once per layer, and Q and V are each one GEMM over the R free rows.
        readonly int[]? shared, sharedRest;
        readonly F[] wq = [], wv = [], dwq = [], dwv = [];
        F[] sx = [], sp = [], sdx = [];
        int sN = -1;

        void ForwardShared(Tensor<F> qkv, Tensor<F> x, int N)
        {
            int C3 = 3 * C;
            var W = block.Wqkv.Value.Data;
            var rs = sharedRest!; var P = shared!;
            if (outIn)
                // [3C, C]: W′_Q row i (input feature rs[i]) is column rs[i] of the Q rows; gathered transposed into [R, C]
                // so that the GEMMs below are the same for both layouts.
                for (int i = 0; i < R; i++)
                    for (int c = 0; c < C; c++) { wq[i * C + c] = W[c * C + rs[i]]; wv[i * C + c] = W[(2 * C + c) * C + rs[i]]; }
            else
                for (int i = 0; i < R; i++)
                {
                    Array.Copy(W, rs[i] * C3, wq, i * C, C);
                    Array.Copy(W, rs[i] * C3 + 2 * C, wv, i * C, C);
                }
            if (sN != N) { sN = N; sx = new F[N * R]; sp = new F[N * dh]; sdx = new F[N * R]; }
            var xd = x.Data; var xr = sx; var xp = sp;
            Parallelism.For(N, Grain, (lo, hi) =>
            {
                for (int n = lo; n < hi; n++)
                {
                    int o = n * C, q = n * R, pp = n * dh;
                    for (int i = 0; i < R; i++) xr[q + i] = xd[o + rs[i]];
                    for (int k = 0; k < dh; k++) xp[pp + k] = xd[o + P[k]];
                }
            });
            if (outIn) Gemm.Multiply<F>(false, true, N, C, C, xd, C, W.AsSpan(C * C), C, qkv.Data.AsSpan(C), C3, accumulate: false);   // k = x·W_Kᵀ
            else Gemm.Multiply<F>(false, false, N, C, C, xd, C, W.AsSpan(C), C3, qkv.Data.AsSpan(C), C3, accumulate: false);
            if (R > 0)   // one head: W_Q and W_V are all identity, q = x + b_Q and v = x
            {
                Gemm.Multiply<F>(false, false, N, C, R, xr, R, wq, C, qkv.Data, C3, accumulate: false);
                Gemm.Multiply<F>(false, false, N, C, R, xr, R, wv, C, qkv.Data.AsSpan(2 * C), C3, accumulate: false);
            }
            var y = qkv.Data; var bq = block.Bqkv.Value.Data;
            Parallelism.For(N, Grain, (lo, hi) =>
            {
                for (int n = lo; n < hi; n++)
                {
                    var pv = xp.AsSpan(n * dh, dh);
                    var q = y.AsSpan(n * C3, C);
                    if (R == 0) { q.Clear(); y.AsSpan(n * C3 + 2 * C, C).Clear(); }
                    TensorPrimitives.Add(q, bq.AsSpan(0, C), q);
                    for (int h = 0; h < H; h++)
                    {
                        TensorPrimitives.Add(q.Slice(h * dh, dh), pv, q.Slice(h * dh, dh));
                        var v = y.AsSpan(n * C3 + 2 * C + h * dh, dh);
                        TensorPrimitives.Add(v, pv, v);
                    }
                }
            });
        }

        void BackwardShared(Tensor<F> dx, Tensor<F> dQkv, Tensor<F> x, int N)
        {
            int C3 = 3 * C;
            var W = block.Wqkv.Value.Data; var dW = block.Wqkv.Grad.Data; var db = block.Bqkv.Grad.Data;
            var dy = dQkv.Data; var dxd = dx.Data; var rs = sharedRest!; var P = shared!;
            if (outIn)
            {
                // k = x·W_Kᵀ with W_K [C, C] (out, in): dx += dk·W_K, dW_K += dkᵀ·x
                Gemm.Multiply<F>(false, false, N, C, C, dy.AsSpan(C), C3, W.AsSpan(C * C), C, dxd, C, accumulate: true);
                Gemm.Multiply<F>(true, false, C, C, N, dy.AsSpan(C), C3, x.Data, C, dW.AsSpan(C * C), C, accumulate: true);
            }
            else
            {
                Gemm.Multiply<F>(false, true, N, C, C, dy.AsSpan(C), C3, W.AsSpan(C), C3, dxd, C, accumulate: true);
                Gemm.Multiply<F>(true, false, C, C, N, x.Data, C, dy.AsSpan(C), C3, dW.AsSpan(C), C3, accumulate: true);
            }
            // x_R (gathered by the forward) → dW′_Q, dW′_V; scattered into the free rows of W_qkv's gradient.
            if (R > 0)
            {
                Gemm.Multiply<F>(true, false, R, C, N, sx, R, dy, C3, dwq, C, accumulate: false);
                Gemm.Multiply<F>(true, false, R, C, N, sx, R, dy.AsSpan(2 * C), C3, dwv, C, accumulate: false);
            }
            if (outIn)
                for (int i = 0; i < R; i++)
                    for (int c = 0; c < C; c++) { dW[c * C + rs[i]] += dwq[i * C + c]; dW[(2 * C + c) * C + rs[i]] += dwv[i * C + c]; }
            else
                for (int i = 0; i < R; i++)
                {
                    var gq = dW.AsSpan(rs[i] * C3, C); TensorPrimitives.Add(gq, dwq.AsSpan(i * C, C), gq);
                    var gv = dW.AsSpan(rs[i] * C3 + 2 * C, C); TensorPrimitives.Add(gv, dwv.AsSpan(i * C, C), gv);
                }
            var dxr = sdx;
            if (R > 0)
            {
                Gemm.Multiply<F>(false, true, N, R, C, dy, C3, wq, C, dxr, R, accumulate: false);
                Gemm.Multiply<F>(false, true, N, R, C, dy.AsSpan(2 * C), C3, wv, C, dxr, R, accumulate: true);
            }
            Parallelism.For(N, Grain, (lo, hi) =>
            {
                var acc = new F[dh];
                for (int n = lo; n < hi; n++)
                {
                    int o = n * C, q = n * R, yo = n * C3;
                    for (int i = 0; i < R; i++) dxd[o + rs[i]] += dxr[q + i];
                    Array.Clear(acc);
                    for (int h = 0; h < H; h++)
                    {
                        TensorPrimitives.Add(acc, dy.AsSpan(yo + h * dh, dh), acc);
                        TensorPrimitives.Add(acc, dy.AsSpan(yo + 2 * C + h * dh, dh), acc);
                    }
                    for (int k = 0; k < dh; k++) dxd[o + P[k]] += acc[k];
                }
            });
            for (int n = 0; n < N; n++) TensorPrimitives.Add(db.AsSpan(0, C), dy.AsSpan(n * C3, C), db.AsSpan(0, C));
        }

        /// <summary>Multiply-adds per token row of this projection (forward): the full one is 3C².</summary>
        public long MacsPerRow => (long)C * C + 2L * H * R * dh;

        void Pack()
        {
            var W = block.Wqkv.Value.Data;
            for (int s = 0; s < 2 * H; s++)
            {
                int col0 = (s < H ? 0 : 2 * C) + (s % H) * dh;
                var rs = rest[s]; var pk = packed[s];
                for (int i = 0; i < R; i++) Array.Copy(W, rs[i] * 3 * C + col0, pk, i * dh, dh);
            }
        }

        void Gather(Tensor<F> x, int N, int[] rs)
        {
            if (xr.Length < N * R) xr = new F[N * R];
            var xd = x.Data;
            var buf = xr;
            Parallelism.For(N, Grain, (lo, hi) =>
            {
                for (int n = lo; n < hi; n++)
                {
                    int o = n * C, q = n * R;
                    for (int i = 0; i < rs.Length; i++) buf[q + i] = xd[o + rs[i]];
                }
            });
        }

        public void Forward(Tensor<F> qkv, Tensor<F> x, int N)
        {
            // A device backend (CUDA) runs the projection as its own kernels, on device-resident tensors.
            if (block.Ops is IFixedQkvOps<F> dev) { dev.FixedQkvForward(qkv, x, block.Wqkv.Value, block.Bqkv.Value, piv, N, C, H, Layout); return; }
            if (shared is not null) { ForwardShared(qkv, x, N); return; }
            Pack();
            int C3 = 3 * C;
            var W = block.Wqkv.Value.Data;
            // k = x·W_K (b_K = 0 is fixed)
            Gemm.Multiply<F>(false, false, N, C, C, x.Data, C, W.AsSpan(C), C3, qkv.Data.AsSpan(C), C3, accumulate: false);
            var bq = block.Bqkv.Value.Data;
            var xd = x.Data; var y = qkv.Data;
            for (int s = 0; s < 2 * H; s++)
            {
                int col0 = (s < H ? 0 : 2 * C) + (s % H) * dh;
                Gather(x, N, rest[s]);
                Gemm.Multiply<F>(false, false, N, dh, R, xr, R, packed[s], dh, y.AsSpan(col0), C3, accumulate: false);
                var p = piv[s];
                bool q = s < H;
                Parallelism.For(N, Grain, (lo, hi) =>
                {
                    for (int n = lo; n < hi; n++)
                    {
                        int o = n * C3 + col0, xo = n * C;
                        if (q) TensorPrimitives.Add(y.AsSpan(o, dh), bq.AsSpan(col0, dh), y.AsSpan(o, dh));
                        for (int k = 0; k < dh; k++) y[o + k] += xd[xo + p[k]];
                    }
                });
            }
        }

        public void Backward(Tensor<F> dx, Tensor<F> dQkv, Tensor<F> x, int N)
        {
            if (block.Ops is IFixedQkvOps<F> dev)
            {
                dev.FixedQkvBackward(dx, block.Wqkv.Grad, block.Bqkv.Grad, dQkv, x, block.Wqkv.Value, piv, N, C, H, Layout);
                return;
            }
            if (shared is not null) { BackwardShared(dx, dQkv, x, N); return; }
            int C3 = 3 * C;
            var W = block.Wqkv.Value.Data; var dW = block.Wqkv.Grad.Data; var db = block.Bqkv.Grad.Data;
            var dy = dQkv.Data; var dxd = dx.Data;
            // k: dx += dk·W_Kᵀ, dW_K += xᵀ·dk
            Gemm.Multiply<F>(false, true, N, C, C, dy.AsSpan(C), C3, W.AsSpan(C), C3, dxd, C, accumulate: true);
            Gemm.Multiply<F>(true, false, C, C, N, x.Data, C, dy.AsSpan(C), C3, dW.AsSpan(C), C3, accumulate: true);
            if (dxr.Length < N * R) dxr = new F[N * R];
            for (int s = 0; s < 2 * H; s++)
            {
                int col0 = (s < H ? 0 : 2 * C) + (s % H) * dh;
                var rs = rest[s]; var p = piv[s];
                Gather(x, N, rs);
                // dW′ = x_Rᵀ·dq_h, scattered into the free rows of W_qkv's gradient
                Gemm.Multiply<F>(true, false, R, dh, N, xr, R, dy.AsSpan(col0), C3, dPacked[s], dh, accumulate: false);
                var dp = dPacked[s];
                for (int i = 0; i < R; i++)
                    TensorPrimitives.Add(dW.AsSpan(rs[i] * C3 + col0, dh), dp.AsSpan(i * dh, dh), dW.AsSpan(rs[i] * C3 + col0, dh));
                // dx_R = dq_h·W′ᵀ; dx[:, P] += dq_h
                Gemm.Multiply<F>(false, true, N, R, dh, dy.AsSpan(col0), C3, packed[s], dh, dxr, R, accumulate: false);
                var dbuf = dxr;
                Parallelism.For(N, Grain, (lo, hi) =>
                {
                    for (int n = lo; n < hi; n++)
                    {
                        int o = n * C, q = n * R, yo = n * C3 + col0;
                        for (int i = 0; i < R; i++) dxd[o + rs[i]] += dbuf[q + i];
                        for (int k = 0; k < dh; k++) dxd[o + p[k]] += dy[yo + k];
                    }
                });
                if (s < H)
                    for (int n = 0; n < N; n++)
                        TensorPrimitives.Add(db.AsSpan(col0, dh), dy.AsSpan(n * C3 + col0, dh), db.AsSpan(col0, dh));
            }
        }
    }

    /// <summary>Gauge-fixed training: canonicalise a GPT-2, install the skip kernels, and the free-entry index sets.</summary>
    public static class GaugeFixedTraining
    {
        /// <summary>Per parameter (model order): null when all entries are free, else the sorted free flat indices.</summary>
        public static int[]?[] FreeIndices<F>(IReadOnlyList<Parameter<F>> ps, SortedDictionary<string, SortedDictionary<int, double>> fixedEntries)
            where F : unmanaged, IFloatingPointIeee754<F> =>
            [.. ps.Select(p => fixedEntries.TryGetValue(p.Name, out var f)
                ? Enumerable.Range(0, p.Value.Length).Where(i => !f.ContainsKey(i)).ToArray()
                : null)];

        /// <summary>Installs <see cref="FixedQkv{F}"/> on every attention block of a BERT (W_qkv stored [3C, C]).</summary>
        public static void InstallKernels<F>(Bert<F> model, int[][][] qPivots, int[][][] vPivots) where F : unmanaged, IFloatingPointIeee754<F>
        {
            for (int i = 0; i < model.Layers.Count; i++)
                model.Layers[i].Attn.Projection = new FixedQkv<F>(model.Layers[i].Attn, model.Config.HiddenSize, model.Config.NumAttentionHeads,
                    qPivots[i], vPivots[i], WeightLayout.OutIn);
        }

        /// <summary>Installs <see cref="FixedQkv{F}"/> on every attention block of a GPT-2.</summary>
        public static void InstallKernels<F>(Gpt2<F> model, int[][][] qPivots, int[][][] vPivots) where F : unmanaged, IFloatingPointIeee754<F>
        {
            for (int i = 0; i < model.Layers.Count; i++)
                model.Layers[i].Attn.Projection = new FixedQkv<F>(model.Layers[i].Attn, model.Config.NEmbd, model.Config.NHead, qPivots[i], vPivots[i]);
        }

        /// <summary>
        /// Multiply-adds of one training step (forward + backward ≈ 3× forward) for the matmuls and attention of a GPT-2,
        /// full or gauge-fixed (the Q and V identity blocks skipped): what the step-time ratio is predicted from.
        /// </summary>
        public static (double Full, double Fixed) StepMacs(Gpt2Config c, int B, int T)
        {
            double N = (double)B * T, d = c.NEmbd, f = c.Ffn, H = c.NHead, dh = d / H, V = c.VocabSize;
            double attnCore = 2.0 * B * T * T * d;                      // q·kᵀ and p·v
            double perLayerFull = N * (3 * d * d + d * d + 2 * d * f) + attnCore;
            double saved = N * 2 * H * dh * dh;
            double head = N * d * V;
            double full = 3 * (c.NLayer * perLayerFull + head);
            double fix = 3 * (c.NLayer * (perLayerFull - saved) + head);
            return (full, fix);
        }
    }
}
