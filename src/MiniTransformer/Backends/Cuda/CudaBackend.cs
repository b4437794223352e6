using System.Runtime.CompilerServices;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends.Cuda;

/// <summary>
/// The op set on an NVIDIA GPU in float32: every op is a kernel from <c>kernels/*.cu</c>, launched on the device's one
/// stream. <para>Residency (this version): host tensors stay the truth, as everywhere else in the engine. Each tensor
/// gets one device buffer, kept for its lifetime (a weak table keyed by the tensor); each op uploads the tensors it
/// reads (including gradients it accumulates into), runs its kernels and downloads what it wrote. That is correct for
/// every caller (models, trainer, optimizer) but bound by PCIe copies; keeping activations and weights resident needs a
/// device-storage slot with a dirty flag in <see cref="Tensor{T}"/> (left for the next step). Kernel timings are taken
/// on device buffers directly (<see cref="KernelBench"/>).</para>
/// </summary>
public sealed class CudaBackend : IBackend<float>, IDisposable
{
    readonly ConditionalWeakTable<Tensor<float>, DeviceBuffer> buffers = new();
    readonly List<DeviceBuffer> scratch = new();

    public CudaBackend(CudaDevice? device = null) => Device = device ?? CudaDevice.Default;

    public CudaDevice Device { get; }
    public string Name => $"cuda-f32 ({Device.Name}, {Device.Arch})";

    const int Block = 256;
    const int GlobalNormChunk = 1 << 14;

    // ------------------------------------------------------------------ residency helpers

    DeviceBuffer Buf(Tensor<float> t)
    {
        if (buffers.TryGetValue(t, out var b) && b.Bytes >= (long)t.Length * 4) return b;
        b = Device.Alloc((long)t.Length * 4);
        buffers.AddOrUpdate(t, b);
        return b;
    }

    /// <summary>The tensor's device buffer holding its current host values.</summary>
    DeviceBuffer In(Tensor<float> t) { var b = Buf(t); Device.Upload<float>(b, t.Data); return b; }
    DeviceBuffer? InOpt(Tensor<float>? t) => t is null ? null : In(t);
    /// <summary>The tensor's device buffer, contents undefined (a forward output).</summary>
    DeviceBuffer Out(Tensor<float> t) => Buf(t);
    void Back(Tensor<float> t) => Device.Download<float>(t.Data, Buf(t));

    DeviceBuffer Ints(ReadOnlySpan<int> v)
    {
        var b = Device.Alloc(Math.Max(v.Length, 1) * 4L);
        scratch.Add(b);
        Device.Upload(b, v);
        return b;
    }

    DeviceBuffer Temp(long floats)
    {
        var b = Device.Alloc(Math.Max(floats, 1) * 4);
        scratch.Add(b);
        return b;
    }

    void EndOp()
    {
        Device.Synchronize();
        foreach (var b in scratch) b.Dispose();
        scratch.Clear();
    }

    static (uint, uint, uint) G(uint x, uint y = 1) => (x, y, 1);

    // ------------------------------------------------------------------ embedding

    public void EmbeddingForward(Tensor<float> x, ReadOnlySpan<int> ids, ReadOnlySpan<int> types,
        Tensor<float> wte, Tensor<float> wpe, Tensor<float>? wtt, int B, int T, int C)
    {
        long n = (long)B * T * C;
        Device.Launch("embedding.cu", "embedding_fwd", G(CudaDevice.Blocks(n, Block)), Block, 0,
            Out(x), Ints(ids), types.IsEmpty ? null : Ints(types), In(wte), In(wpe), InOpt(wtt), B, T, C);
        Back(x); EndOp();
    }

    public void EmbeddingBackward(Tensor<float> dWte, Tensor<float> dWpe, Tensor<float>? dWtt, Tensor<float> dx,
        ReadOnlySpan<int> ids, ReadOnlySpan<int> types, int B, int T, int C)
    {
        var ddx = In(dx);
        Device.Launch("embedding.cu", "embedding_bwd_tables", G(CudaDevice.Blocks(C, 64)), 64, 0,
            In(dWte), InOpt(dWtt), ddx, Ints(ids), types.IsEmpty ? null : Ints(types), B * T, C);
        Device.Launch("embedding.cu", "embedding_bwd_positions", G(CudaDevice.Blocks((long)T * C, Block)), Block, 0,
            In(dWpe), ddx, B, T, C);
        Back(dWte); Back(dWpe); if (dWtt is not null) Back(dWtt);
        EndOp();
    }

    // ------------------------------------------------------------------ layernorm

    public void LayerNormForward(Tensor<float> y, Tensor<float> mean, Tensor<float> rstd, Tensor<float> x,
        Tensor<float> gamma, Tensor<float> beta, int N, int C, double eps)
    {
        Device.Launch("layernorm.cu", "layernorm_fwd", G(CudaDevice.Blocks(N, 4)), 128, 0,
            Out(y), Out(mean), Out(rstd), In(x), In(gamma), In(beta), N, C, (float)eps);
        Back(y); Back(mean); Back(rstd); EndOp();
    }

    public void LayerNormBackward(Tensor<float> dx, Tensor<float> dGamma, Tensor<float> dBeta, Tensor<float> dy, Tensor<float> x,
        Tensor<float> gamma, Tensor<float> mean, Tensor<float> rstd, int N, int C)
    {
        var (ddy, dxx, dmean, drstd) = (In(dy), In(x), In(mean), In(rstd));
        Device.Launch("layernorm.cu", "layernorm_bwd_dx", G(CudaDevice.Blocks(N, 4)), 128, 0,
            In(dx), ddy, dxx, In(gamma), dmean, drstd, N, C);
        Device.Launch("layernorm.cu", "layernorm_bwd_params", G(CudaDevice.Blocks(C, 64)), 64, 0,
            In(dGamma), In(dBeta), ddy, dxx, dmean, drstd, N, C);
        Back(dx); Back(dGamma); Back(dBeta); EndOp();
    }

    // ------------------------------------------------------------------ matmul

    /// <summary>C[M,N] (+)= op(A)·op(B) on device buffers (row-major, leading dimensions given).</summary>
    public void Sgemm(DeviceBuffer c, DeviceBuffer a, DeviceBuffer b, int M, int N, int K, int lda, int ldb, int ldc,
        bool transA, bool transB, bool accumulate) =>
        Device.Launch("matmul.cu", "sgemm_f32", G(CudaDevice.Blocks(N, 64), CudaDevice.Blocks(M, 64)), 256, 0,
            c, a, b, M, N, K, lda, ldb, ldc, transA ? 1 : 0, transB ? 1 : 0, accumulate ? 1 : 0);

    public void MatmulForward(Tensor<float> y, Tensor<float> x, Tensor<float> w, Tensor<float>? b, int N, int K, int M, WeightLayout layout)
    {
        bool tB = layout == WeightLayout.OutIn;
        var dy = Out(y);
        Sgemm(dy, In(x), In(w), N, M, K, K, tB ? K : M, M, false, tB, false);
        if (b is not null)
            Device.Launch("matmul.cu", "bias_add", G(CudaDevice.Blocks((long)N * M, Block)), Block, 0, dy, In(b), N, M);
        Back(y); EndOp();
    }

    public void MatmulBackward(Tensor<float>? dx, Tensor<float> dW, Tensor<float>? db, Tensor<float> dy, Tensor<float> x, Tensor<float> w,
        int N, int K, int M, WeightLayout layout)
    {
        var (ddy, dxx, dw) = (In(dy), In(x), In(w));
        var ddW = In(dW);
        if (layout == WeightLayout.InOut)
        {
            if (dx is not null) Sgemm(In(dx), ddy, dw, N, K, M, M, M, K, false, true, true);   // dx += dy·Wᵀ
            Sgemm(ddW, dxx, ddy, K, M, N, K, M, M, true, false, true);                         // dW += xᵀ·dy
        }
        else
        {
            if (dx is not null) Sgemm(In(dx), ddy, dw, N, K, M, M, K, K, false, false, true);  // dx += dy·W
            Sgemm(ddW, ddy, dxx, M, K, N, M, K, K, true, false, true);                         // dW += dyᵀ·x
        }
        if (db is not null)
            Device.Launch("matmul.cu", "column_sums", G(CudaDevice.Blocks(M, 64)), 64, 0, In(db), ddy, N, M);
        if (dx is not null) Back(dx);
        Back(dW); if (db is not null) Back(db);
        EndOp();
    }

    // ------------------------------------------------------------------ attention

    public const int AttentionRows = 4, AttentionKeyTile = 32, AttentionMaxHeadSize = 128;

    public static uint AttentionShared(int hs) => (uint)((AttentionRows * hs + 2 * AttentionKeyTile * (hs + 1)) * 4);

    public void AttentionForward(Tensor<float> y, Tensor<float> att, Tensor<float> qkv, ReadOnlySpan<int> keyMask,
        int B, int T, int C, int NH, bool causal)
    {
        int hs = C / NH;
        if (hs > AttentionMaxHeadSize) throw new InputException($"cuda attention: head size {hs} is over {AttentionMaxHeadSize}");
        var lse = Temp((long)B * NH * T);
        Device.Launch("attention.cu", "attention_fwd", G(CudaDevice.Blocks(T, AttentionRows), (uint)(B * NH)), 32 * AttentionRows,
            AttentionShared(hs), Out(y), lse, Out(att), In(qkv), keyMask.IsEmpty ? null : Ints(keyMask), B, T, C, NH, causal ? 1 : 0);
        Back(y); Back(att); EndOp();
    }

    public void AttentionBackward(Tensor<float> dqkv, Tensor<float> dy, Tensor<float> qkv, Tensor<float> att, int B, int T, int C, int NH)
    {
        var ds = Temp((long)B * NH * T * T);
        var (ddy, dq, datt, dd) = (In(dy), In(qkv), In(att), In(dqkv));
        Device.Launch("attention.cu", "attention_bwd_ds", G(CudaDevice.Blocks(T, AttentionRows), (uint)(B * NH)), 32 * AttentionRows, 0,
            ds, ddy, dq, datt, B, T, C, NH);
        long n = (long)B * T * C;
        Device.Launch("attention.cu", "attention_bwd_dq", G(CudaDevice.Blocks(n, Block)), Block, 0, dd, ds, dq, B, T, C, NH);
        Device.Launch("attention.cu", "attention_bwd_dkdv", G(CudaDevice.Blocks(n, Block)), Block, 0, dd, ds, datt, ddy, dq, B, T, C, NH);
        Back(dqkv); EndOp();
    }

    // ------------------------------------------------------------------ gelu, residual

    public void GeluForward(Tensor<float> y, Tensor<float> x, int n, GeluForm form)
    {
        Device.Launch("gelu.cu", form == GeluForm.Tanh ? "gelu_tanh_fwd" : "gelu_erf_fwd", G(CudaDevice.Blocks(n, Block)), Block, 0,
            Out(y), In(x), n);
        Back(y); EndOp();
    }

    public void GeluBackward(Tensor<float> dx, Tensor<float> dy, Tensor<float> x, int n, GeluForm form)
    {
        Device.Launch("gelu.cu", form == GeluForm.Tanh ? "gelu_tanh_bwd" : "gelu_erf_bwd", G(CudaDevice.Blocks(n, Block)), Block, 0,
            In(dx), In(dy), In(x), n);
        Back(dx); EndOp();
    }

    public void ResidualForward(Tensor<float> y, Tensor<float> a, Tensor<float> b, int n)
    {
        Device.Launch("residual.cu", "residual_fwd", G(CudaDevice.Blocks(n, Block)), Block, 0, Out(y), In(a), In(b), n);
        Back(y); EndOp();
    }

    public void ResidualBackward(Tensor<float> da, Tensor<float> db, Tensor<float> dy, int n)
    {
        Device.Launch("residual.cu", "residual_bwd", G(CudaDevice.Blocks(n, Block)), Block, 0, In(da), In(db), In(dy), n);
        Back(da); Back(db); EndOp();
    }

    // ------------------------------------------------------------------ cross-entropy

    public (double LossSum, int Count) CrossEntropyForward(Tensor<float> lse, Tensor<float> logits, ReadOnlySpan<int> targets, int N, int V)
    {
        var loss = Temp(N);
        Device.Launch("crossentropy.cu", "crossentropy_fwd", G((uint)N), 256, 0, Out(lse), loss, In(logits), Ints(targets), N, V);
        Back(lse);
        var host = new float[N];
        Device.Download<float>(host, loss);
        EndOp();
        double sum = 0;
        int count = 0;
        for (int n = 0; n < N; n++)
            if (targets[n] != -100) { sum += host[n]; count++; }
        return (sum, count);
    }

    public void CrossEntropyBackward(Tensor<float> dlogits, Tensor<float> logits, Tensor<float> lse, ReadOnlySpan<int> targets,
        int N, int V, double scale)
    {
        var dl = ReferenceEquals(dlogits, logits) ? In(logits) : Out(dlogits);
        var lg = ReferenceEquals(dlogits, logits) ? dl : In(logits);
        Device.Launch("crossentropy.cu", "crossentropy_bwd", G((uint)N), 256, 0, dl, lg, In(lse), Ints(targets), N, V, (float)scale);
        Back(dlogits); EndOp();
    }

    // ------------------------------------------------------------------ optimizer, norm

    public void AdamW(Tensor<float> param, Tensor<float> grad, Tensor<float> m, Tensor<float> v, in AdamWStep s)
    {
        float decay = (float)(1 - s.LearningRate * s.WeightDecay);
        float stepSize = (float)(s.LearningRate / (1 - Math.Pow(s.Beta1, s.Step)));
        float invSqrtBc2 = (float)(1 / Math.Sqrt(1 - Math.Pow(s.Beta2, s.Step)));
        long n = param.Length;
        Device.Launch("adamw.cu", "adamw_f32", G(CudaDevice.Blocks(n, Block)), Block, 0, In(param), In(grad), In(m), In(v), n,
            (float)s.Beta1, (float)s.Beta2, decay, stepSize, invSqrtBc2, (float)s.Epsilon, (float)s.GradScale);
        Back(param); Back(m); Back(v); EndOp();
    }

    public void Sgd(Tensor<float> param, Tensor<float> grad, double learningRate, double weightDecay, double gradScale)
    {
        long n = param.Length;
        Device.Launch("adamw.cu", "sgd_f32", G(CudaDevice.Blocks(n, Block)), Block, 0, In(param), In(grad), n,
            (float)(1 - learningRate * weightDecay), (float)(-learningRate * gradScale));
        Back(param); EndOp();
    }

    public double SumOfSquares(Tensor<float> g)
    {
        if (g.Length == 0) return 0;
        int chunks = (int)CudaDevice.Blocks(g.Length, GlobalNormChunk);
        var partial = Temp(chunks);
        Device.Launch("global_norm.cu", "sumsq_chunks", G((uint)chunks), 256, 0, partial, In(g), (long)g.Length, GlobalNormChunk);
        var host = new float[chunks];
        Device.Download<float>(host, partial);
        EndOp();
        double s = 0;
        foreach (float p in host) s += p;
        return s;
    }

    public void Dispose()
    {
        foreach (var kv in buffers) kv.Value.Dispose();
        buffers.Clear();
    }
}
