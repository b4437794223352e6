using System.Runtime.CompilerServices;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends.Cuda;

/// <summary>
/// A tensor's device copy on one CUDA device: its values as float32, or as bf16 (the bf16-storage backend; the host
/// keeps float32 and each copy converts, rounding to nearest even). A bf16 weight that an optimizer updates also has a
/// float32 <see cref="Master"/> copy: the optimizer updates the master and rewrites the bf16 copy from it, and host
/// transfers go to and from the master, so the weights lose nothing to bf16 between steps.
/// </summary>
public sealed class CudaStorage : IDeviceStorage<float>
{
    public CudaStorage(CudaDevice device, int length, bool bf16)
    {
        Length = length; Bf16 = bf16;
        Buffer = device.Alloc((long)length * (bf16 ? 2 : 4));
    }

    /// <summary>The copy the kernels read and write (float32 or bf16 elements).</summary>
    public DeviceBuffer Buffer { get; }
    public CudaDevice Device => Buffer.Device;
    public int Length { get; }
    public bool Bf16 { get; }
    /// <summary>The float32 master of a bf16 weight (null until an optimizer step creates it).</summary>
    public DeviceBuffer? Master { get; private set; }

    /// <summary>Creates the master from the tensor's current values (the caller passes them).</summary>
    internal DeviceBuffer MakeMaster(ReadOnlySpan<float> current)
    {
        if (Master is not null) return Master;
        var m = Device.Alloc((long)Length * 4);
        Device.Upload(m, current);
        return Master = m;
    }

    /// <summary>A non-optimizer op wrote the bf16 copy: it is the truth now, so the master goes.</summary>
    internal void DropMaster() { Master?.Dispose(); Master = null; }

    public void Upload(ReadOnlySpan<float> host)
    {
        Device.MakeCurrent();
        if (!Bf16) { Device.Upload(Buffer, host); return; }
        var h = new ushort[Length];
        for (int i = 0; i < h.Length; i++) h[i] = BFloat16.FromFloat(host[i]);
        Device.Upload<ushort>(Buffer, h);
        if (Master is not null) Device.Upload(Master, host);
    }

    public void Download(Span<float> host)   // waits for the stream
    {
        Device.MakeCurrent();
        if (Master is not null) { Device.Download(host, Master); return; }
        if (!Bf16) { Device.Download(host, Buffer); return; }
        var h = new ushort[Length];
        Device.Download<ushort>(h, Buffer);
        for (int i = 0; i < h.Length; i++) host[i] = BFloat16.ToFloat(h[i]);
    }

    public void Zero()
    {
        if (Length == 0) return;
        Device.MakeCurrent();
        Device.Zero(Buffer, Buffer.Bytes);   // queued on the stream, after every op that reads the old values
        if (Master is not null) Device.Zero(Master, Master.Bytes);
    }

    public void Dispose() { Buffer.Dispose(); DropMaster(); }
}

/// <summary>bfloat16 as the kernels store it (common.cuh): the top 16 bits of an IEEE float32, rounded to nearest even.</summary>
public static class BFloat16
{
    public static ushort FromFloat(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return (ushort)((u >> 16) | 0x40);   // NaN stays a quiet NaN
        u += 0x7fffu + ((u >> 16) & 1u);
        return (ushort)(u >> 16);
    }

    public static float ToFloat(ushort h) => BitConverter.UInt32BitsToSingle((uint)h << 16);

    /// <summary>f rounded to the nearest bf16 value (as a float).</summary>
    public static float Round(float f) => ToFloat(FromFloat(f));
}

/// <summary>
/// The op set on an NVIDIA GPU in float32: every op is a kernel from <c>kernels/*.cu</c>, launched on the device's one
/// stream.
/// <para>Residency: tensors live on the device. The first op that touches a tensor attaches a
/// <see cref="CudaStorage"/> to it (<see cref="Tensor{T}.AttachDevice"/>); an op's inputs are uploaded only when their
/// host array is newer than the device copy (<see cref="Tensor{T}.DeviceRead"/>), and its outputs are marked
/// device-current (<see cref="Tensor{T}.MarkDeviceWritten"/>) without a download. Host code that reads a tensor
/// (<see cref="Tensor{T}.Data"/>, <see cref="Tensor{T}.HostView"/>) downloads it then, so every caller stays correct;
/// a training step on this backend copies to the host only the summed loss (8 bytes), the gradient-norm partial sums,
/// and whatever host code the model or optimizer still runs (ECD, BERT's pooler, SGD momentum on gauge-fixed
/// parameters: correct, but each such access is a round trip). Kernels are queued asynchronously; the
/// stream is synchronized only by copies to the host.</para>
/// </summary>
public sealed class CudaBackend : IBackend<float>, IFixedQkvOps<float>, IMaskedOptimizerOps<float>, IDisposable
{
    /// <param name="storage">F32, or BF16: every tensor stored as bf16 on the device (float32 arithmetic in the kernels;
    /// layernorm statistics, log-sum-exp, AdamW moments and the weights' master copies stay float32).</param>
    public CudaBackend(CudaDevice? device = null, DType storage = DType.F32)
    {
        if (storage is not (DType.F32 or DType.BF16)) throw new InputException($"--dtype: the CUDA backend stores f32 or bf16, not {storage}");
        Device = device ?? CudaDevice.Default;
        Storage = storage;
        bf = storage == DType.BF16;
        E = bf ? 2 : 4;
    }

    public CudaDevice Device { get; }
    /// <summary>The element type of tensors on the device: F32 or BF16.</summary>
    public DType Storage { get; }
    readonly bool bf;
    /// <summary>Bytes per stored element (4 or 2).</summary>
    readonly int E;
    public string Name => $"cuda-{(bf ? "bf16" : "f32")}{(TensorCores ? " + mma.sync" : "")} ({Device.Name}, {Device.Arch})";

    /// <summary>
    /// Launches an op kernel in the backend's storage type: <paramref name="file"/>'s float32 build, or its bf16 build
    /// (<c>file#bf16</c>, kernel name + <c>_bf16</c>) with bf16 storage.
    /// </summary>
    void Op(string file, string name, (uint, uint, uint) grid, uint block, uint shared, params object?[] args) =>
        Device.Launch(bf ? file + KernelCompiler.Bf16Suffix : file, bf ? name + "_bf16" : name, grid, block, shared, args);

    const int Block = 256;
    const int GlobalNormChunk = 1 << 14;

    // ------------------------------------------------------------------ residency helpers

    // Tensors an op writes: marked device-current when the op has been queued (Done). Marking at the end, not when the
    // buffer is fetched, means an input fetched after an aliased output is still uploaded if its host copy is newer.
    readonly List<Tensor<float>> written = [];

    void Begin() { Device.MakeCurrent(); written.Clear(); }

    /// <param name="optimizer">An optimizer step, which keeps a bf16 weight's float32 master current itself; after any
    /// other op, a written tensor's master (if it has one) is stale and goes.</param>
    void Done(bool optimizer = false)
    {
        foreach (var t in written)
        {
            if (!optimizer && t.DeviceStorage is CudaStorage { Master: not null } s) s.DropMaster();
            t.MarkDeviceWritten();
        }
        written.Clear();
    }

    /// <summary>
    /// The tensor's device buffer on this device, in the backend's storage type or float32 (<paramref name="f32"/>:
    /// saved statistics, optimizer moments). Attached on first use; a copy on another device or of the other element
    /// type is brought home first (a download) and replaced.
    /// </summary>
    DeviceBuffer Buf(Tensor<float> t, bool f32 = false)
    {
        bool want16 = bf && !f32;
        if (t.DeviceStorage is CudaStorage s && ReferenceEquals(s.Device, Device) && s.Bf16 == want16) return s.Buffer;
        t.DetachDevice()?.Dispose();
        var st = new CudaStorage(Device, t.Length, want16);
        t.AttachDevice(st);
        return st.Buffer;
    }

    /// <summary>An input: its device buffer holding the tensor's current values (uploaded only if the host copy is newer).</summary>
    DeviceBuffer In(Tensor<float> t, bool f32 = false) { var b = Buf(t, f32); t.DeviceRead(); return b; }
    DeviceBuffer? InOpt(Tensor<float>? t) => t is null ? null : In(t);
    /// <summary>An output the op overwrites entirely (no upload).</summary>
    DeviceBuffer Out(Tensor<float> t, bool f32 = false) { var b = Buf(t, f32); written.Add(t); return b; }
    /// <summary>An output the op updates (accumulates into, or updates in place): current values on the device first.</summary>
    DeviceBuffer InOut(Tensor<float> t, bool f32 = false) { var b = In(t, f32); written.Add(t); return b; }
    DeviceBuffer? InOutOpt(Tensor<float>? t) => t is null ? null : InOut(t);

    /// <summary>A device address <paramref name="elems"/> stored elements into a tensor's buffer (E bytes each; kernel argument).</summary>
    ulong At(DeviceBuffer b, long elems) => b.Ptr + (ulong)(elems * E);
    /// <summary>A device address <paramref name="elems"/> 4-byte elements (float32 or int) into a buffer.</summary>
    static ulong At4(DeviceBuffer b, long elems) => b.Ptr + (ulong)(elems * 4);

    // Scratch buffers reused across ops (ids, masks, targets, attention's D, partial sums), grown on demand.
    readonly Dictionary<string, DeviceBuffer> scratch = [];

    DeviceBuffer Scratch(string name, long bytes)
    {
        bytes = Math.Max(bytes, 4);
        if (scratch.TryGetValue(name, out var b) && b.Bytes >= bytes) return b;
        if (b is not null) { Device.Synchronize(); b.Dispose(); }   // queued kernels may still read the old one
        b = Device.Alloc(bytes);
        scratch[name] = b;
        return b;
    }

    // Column reductions (bias, LayerNorm and PReLU parameter gradients) in two deterministic stages (kernels/common.cuh):
    // stage 1 writes ColumnChunks(N) float32 partial sums per column, column_partials_add adds them into the gradient.
    const int ColumnRows = 64;   // COL_ROWS in common.cuh
    static int ColumnChunks(int N) => Math.Max(1, (N + ColumnRows - 1) / ColumnRows);
    static (uint, uint, uint) ColumnGrid(int M, int N) => G(CudaDevice.Blocks(M, Block), (uint)ColumnChunks(N));

    void AddColumnPartials(DeviceBuffer acc, ulong partial, int N, int M) =>
        Op("matmul.cu", "column_partials_add", G(CudaDevice.Blocks(M, Block)), Block, 0, acc, partial, ColumnChunks(N), M);

    /// <summary>acc[j] += Σ_n a[n·lda + j] for j &lt; M (a bias gradient, or a column block of one).</summary>
    void ColumnSums(DeviceBuffer acc, ulong a, int N, int M, int lda)
    {
        var partial = Scratch("columns.partial", 4L * ColumnChunks(N) * M);
        Op("matmul.cu", "column_partials", ColumnGrid(M, N), Block, 0, partial, a, N, M, lda);
        AddColumnPartials(acc, partial.Ptr, N, M);
    }

    /// <summary>Host ints copied to a scratch buffer (the upload waits, so the buffer may be reused by the next op).</summary>
    DeviceBuffer Ints(string name, ReadOnlySpan<int> v)
    {
        var b = Scratch(name, v.Length * 4L);
        Device.Upload(b, v);
        return b;
    }

    static (uint, uint, uint) G(uint x, uint y = 1, uint z = 1) => (x, y, z);

    // ------------------------------------------------------------------ embedding

    public void EmbeddingForward(Tensor<float> x, ReadOnlySpan<int> ids, ReadOnlySpan<int> types,
        Tensor<float> wte, Tensor<float> wpe, Tensor<float>? wtt, int B, int T, int C)
    {
        Begin();
        long n = (long)B * T * C;
        Op("embedding.cu", "embedding_fwd", G(CudaDevice.Blocks(n, Block)), Block, 0,
            Out(x), Ints("ids", ids), types.IsEmpty ? null : Ints("types", types), In(wte), In(wpe), InOpt(wtt), B, T, C);
        Done();
    }

    public void EmbeddingBackward(Tensor<float> dWte, Tensor<float> dWpe, Tensor<float>? dWtt, Tensor<float> dx,
        ReadOnlySpan<int> ids, ReadOnlySpan<int> types, int B, int T, int C)
    {
        Begin();
        var ddx = In(dx);
        TableRowsBackward("wte", InOut(dWte), ddx, ids, dWte.Length / C, C);
        if (dWtt is not null)
        {
            int n = B * T;
            int[]? zeros = types.IsEmpty ? new int[n] : null;   // no types given: type 0 everywhere
            TableRowsBackward("wtt", InOut(dWtt), ddx, zeros ?? types, dWtt.Length / C, C);
        }
        Op("embedding.cu", "embedding_bwd_positions", G(CudaDevice.Blocks((long)T * C, Block)), Block, 0,
            InOut(dWpe), ddx, B, T, C);
        Done();
    }

    /// <summary>
    /// dw[ids[n], :] += dx[n, :] for every token n, as a gather (embedding_bwd_rows): the positions grouped by table row
    /// with a stable counting sort on the host, uploaded as [order (N) | start (U + 1) | rows (U)] for the U rows hit.
    /// </summary>
    void TableRowsBackward(string table, DeviceBuffer dw, DeviceBuffer dx, ReadOnlySpan<int> ids, long rowsInTable, int C)
    {
        int n = ids.Length;
        var count = new int[rowsInTable + 1];
        foreach (int id in ids)
        {
            if ((uint)id >= (ulong)rowsInTable) throw new InputException($"token id {id} is outside the {table} table of {rowsInTable} rows");
            count[id + 1]++;
        }
        int used = 0;
        for (long r = 1; r <= rowsInTable; r++) { if (count[r] > 0) used++; count[r] += count[r - 1]; }   // count[r] = first slot of row r
        var lists = new int[n + 2 * used + 1];
        var order = lists.AsSpan(0, n);
        var next = (int[])count.Clone();
        for (int i = 0; i < n; i++) order[next[ids[i]]++] = i;                 // stable: positions in increasing n per row
        Span<int> start = lists.AsSpan(n, used + 1), rows = lists.AsSpan(n + used + 1, used);
        int u = 0;
        for (long r = 0; r < rowsInTable; r++)
            if (count[r + 1] > count[r]) { start[u] = count[r]; rows[u] = (int)r; u++; }
        start[used] = n;
        if (used == 0) return;
        var d = Ints("embedding." + table, lists);
        Op("embedding.cu", "embedding_bwd_rows", G((uint)used), Block, 0, dw, dx, d.Ptr, At4(d, n), At4(d, n + used + 1), C);
    }

    // ------------------------------------------------------------------ layernorm

    public void LayerNormForward(Tensor<float> y, Tensor<float> mean, Tensor<float> rstd, Tensor<float> x,
        Tensor<float> gamma, Tensor<float> beta, int N, int C, double eps)
    {
        Begin();
        Op("layernorm.cu", "layernorm_fwd", G(CudaDevice.Blocks(N, 4)), 128, 0,
            Out(y), Out(mean, f32: true), Out(rstd, f32: true), In(x), In(gamma), In(beta), N, C, (float)eps);
        Done();
    }

    public void LayerNormBackward(Tensor<float> dx, Tensor<float> dGamma, Tensor<float> dBeta, Tensor<float> dy, Tensor<float> x,
        Tensor<float> gamma, Tensor<float> mean, Tensor<float> rstd, int N, int C)
    {
        Begin();
        var (ddy, dxx, dmean, drstd) = (In(dy), In(x), In(mean, f32: true), In(rstd, f32: true));
        Op("layernorm.cu", "layernorm_bwd_dx", G(CudaDevice.Blocks(N, 4)), 128, 0,
            InOut(dx), ddy, dxx, In(gamma), dmean, drstd, N, C);
        var partial = Scratch("columns.partial", 8L * ColumnChunks(N) * C);   // γ's partials, then β's
        ulong pg = partial.Ptr, pb = At4(partial, (long)ColumnChunks(N) * C);
        Op("layernorm.cu", "layernorm_bwd_params_partials", ColumnGrid(C, N), Block, 0, pg, pb, ddy, dxx, dmean, drstd, N, C);
        AddColumnPartials(InOut(dGamma), pg, N, C);
        AddColumnPartials(InOut(dBeta), pb, N, C);
        Done();
    }

    // ------------------------------------------------------------------ matmul

    /// <summary>C[M,N] (+)= op(A)·op(B) on device buffers of the backend's storage type (row-major, leading dimensions given).</summary>
    public void Sgemm(DeviceBuffer c, DeviceBuffer a, DeviceBuffer b, int M, int N, int K, int lda, int ldb, int ldc,
        bool transA, bool transB, bool accumulate) =>
        Sgemm(c.Ptr, a.Ptr, b.Ptr, M, N, K, lda, ldb, ldc, transA, transB, accumulate);

    /// <summary>
    /// The same on raw device addresses (e.g. a column block of a wider matrix: pointer + offset, its row stride as ld).
    /// With bf16 storage on an sm_80+ device every shape runs on the tensor cores (gemm_tc_bf16, mma.sync; edge tiles
    /// zero-filled, e.g. GPT-2's vocabulary of 50257); float32 storage on the SIMT kernel.
    /// </summary>
    public void Sgemm(ulong c, ulong a, ulong b, int M, int N, int K, int lda, int ldb, int ldc,
        bool transA, bool transB, bool accumulate)
    {
        if (M == 0 || N == 0) return;
        if (TensorCores && K > 0)
            Device.Launch("matmul.cu#bf16", "gemm_tc_bf16", G(CudaDevice.Blocks(N, 128), CudaDevice.Blocks(M, 128)), 256, 0,
                c, a, b, M, N, K, lda, ldb, ldc, transA ? 1 : 0, transB ? 1 : 0, accumulate ? 1 : 0);
        else
            Op("matmul.cu", "sgemm_f32", G(CudaDevice.Blocks(N, 64), CudaDevice.Blocks(M, 64)), 256, 0,
                c, a, b, M, N, K, lda, ldb, ldc, transA ? 1 : 0, transB ? 1 : 0, accumulate ? 1 : 0);
    }

    /// <summary>
    /// Whether bf16 GEMMs use the tensor cores: bf16 storage on sm_80 or newer, unless MT_CUDA_TC=0 (to
    /// tell a tensor-core fault from a SIMT one).
    /// </summary>
    public bool TensorCores => bf && Device.Major >= 8 && Environment.GetEnvironmentVariable("MT_CUDA_TC") != "0";

    /// <summary>
    /// <see cref="Sgemm(ulong, ulong, ulong, int, int, int, int, int, int, bool, bool, bool)"/> with index tables relabelling
    /// the logical row (mapM), inner (mapK) and column (mapN) indices to physical ones (0: identity); see matmul.cu.
    /// </summary>
    void SgemmMapped(ulong c, ulong a, ulong b, int M, int N, int K, int lda, int ldb, int ldc,
        bool transA, bool transB, bool accumulate, ulong mapM, ulong mapK, ulong mapN) =>
        Op("matmul.cu", "sgemm_f32_mapped", G(CudaDevice.Blocks(N, 64), CudaDevice.Blocks(M, 64)), 256, 0,
            c, a, b, M, N, K, lda, ldb, ldc, transA ? 1 : 0, transB ? 1 : 0, accumulate ? 1 : 0, mapM, mapK, mapN);

    public void MatmulForward(Tensor<float> y, Tensor<float> x, Tensor<float> w, Tensor<float>? b, int N, int K, int M, WeightLayout layout)
    {
        Begin();
        bool tB = layout == WeightLayout.OutIn;
        var (dx, dw, db) = (In(x), In(w), InOpt(b));
        var dy = Out(y);
        Sgemm(dy, dx, dw, N, M, K, K, tB ? K : M, M, false, tB, false);
        if (db is not null)
            Op("matmul.cu", "bias_add", G(CudaDevice.Blocks((long)N * M, Block)), Block, 0, dy, db, N, M);
        Done();
    }

    public void MatmulBackward(Tensor<float>? dx, Tensor<float> dW, Tensor<float>? db, Tensor<float> dy, Tensor<float> x, Tensor<float> w,
        int N, int K, int M, WeightLayout layout)
    {
        Begin();
        var (ddy, dxx, dw) = (In(dy), In(x), In(w));
        var ddW = InOut(dW);
        var ddx = InOutOpt(dx);
        if (layout == WeightLayout.InOut)
        {
            if (ddx is not null) Sgemm(ddx, ddy, dw, N, K, M, M, M, K, false, true, true);   // dx += dy·Wᵀ
            Sgemm(ddW, dxx, ddy, K, M, N, K, M, M, true, false, true);                         // dW += xᵀ·dy
        }
        else
        {
            if (ddx is not null) Sgemm(ddx, ddy, dw, N, K, M, M, K, K, false, false, true);  // dx += dy·W
            Sgemm(ddW, ddy, dxx, M, K, N, M, K, K, true, false, true);                         // dW += dyᵀ·x
        }
        if (db is not null)
            ColumnSums(InOut(db), ddy.Ptr, N, M, M);
        Done();
    }

    // ------------------------------------------------------------------ gauge-fixed QKV projection

    /// <summary>
    /// Index tables of one pivot layout (cached per pivot array), on the device:
    /// rest: the free rows R per segment, concatenated ([1 or 2·NH][R]); pcol [2C]: the x column each Q/V output column
    /// copies through the identity block; invStart [C+1] / invCols [2C]: pcol inverted (CSR, ascending output column).
    /// Segments: with one pivot set shared by every head (what Canonical.Fix chooses) Q and V are one segment each, C
    /// columns wide (the rest rows are the same for every head, so one gather-GEMM covers all heads); otherwise one per
    /// (part, head), d_h wide.
    /// </summary>
    sealed class FixedPlan(DeviceBuffer rest, DeviceBuffer pcol, DeviceBuffer invStart, DeviceBuffer invCols,
        (int Col0, int Width, int RestIndex)[] segments, int R)
    {
        public DeviceBuffer Rest { get; } = rest;
        public DeviceBuffer Pcol { get; } = pcol;
        public DeviceBuffer InvStart { get; } = invStart;
        public DeviceBuffer InvCols { get; } = invCols;
        public (int Col0, int Width, int RestIndex)[] Segments { get; } = segments;
        public int R { get; } = R;
    }

    readonly ConditionalWeakTable<int[][], FixedPlan> plans = new();

    FixedPlan Plan(int[][] pivots, int C, int NH)
    {
        if (plans.TryGetValue(pivots, out var plan)) return plan;
        int dh = C / NH, R = C - dh;
        if (pivots.Length != 2 * NH || pivots.Any(p => p.Length != dh || p.Any(r => (uint)r >= (uint)C) || p.Distinct().Count() != dh))
            throw new ArgumentException($"gauge-fixed qkv: expected {2 * NH} pivot sets of {dh} distinct rows in [0, {C})");
        bool shared = pivots.All(p => p.SequenceEqual(pivots[0]));
        var restLists = (shared ? pivots[..1] : pivots).Select(p => Enumerable.Range(0, C).Except(p).ToArray()).ToArray();
        var segments = shared
            ? new[] { (0, C, 0), (2 * C, C, 0) }
            : Enumerable.Range(0, 2 * NH).Select(s => ((s < NH ? 0 : 2 * C) + (s % NH) * dh, dh, s)).ToArray();
        // pcol[k], k ∈ [0, 2C): output k < C is Q column k (head k / dh), k ≥ C is V column k − C; j = k mod dh.
        var pcol = new int[2 * C];
        for (int k = 0; k < 2 * C; k++)
        {
            int part = k < C ? 0 : 1, col = k % C;
            pcol[k] = pivots[part * NH + col / dh][col % dh];
        }
        var invStart = new int[C + 1];
        foreach (int c in pcol) invStart[c + 1]++;
        for (int c = 0; c < C; c++) invStart[c + 1] += invStart[c];
        var invCols = new int[2 * C];
        var fill = (int[])invStart.Clone();
        for (int k = 0; k < 2 * C; k++) invCols[fill[pcol[k]]++] = k;   // ascending k within each x column
        DeviceBuffer Up(int[] v) { var b = Device.Alloc(Math.Max(v.Length, 1) * 4L); Device.Upload<int>(b, v); return b; }
        plan = new FixedPlan(Up([.. restLists.SelectMany(r => r)]), Up(pcol), Up(invStart), Up(invCols), segments, R);
        plans.AddOrUpdate(pivots, plan);
        return plan;
    }

    // Index math of the two weight layouts (C3 = 3C; o = an output column of qkv, c = an input feature):
    //   InOut  W [C, 3C]: W(c, o) = W[c·C3 + o]  → a column block o0… is pointer W + o0 with row stride C3, read W(c, o0+j)
    //                     as "row c, column j" (no transpose).
    //   OutIn  W [3C, C]: W(c, o) = W[o·C + c]   → the block is pointer W + o0·C with row stride C, read as "row j,
    //                     column c" (transposed).
    // The free rows R (input features) are gathered through the same index table either way: mapK in forward (the
    // inner index), mapM / mapN in backward (the index of dW or dx being written).

    public void FixedQkvForward(Tensor<float> qkv, Tensor<float> x, Tensor<float> w, Tensor<float> b, int[][] pivots, int N, int C, int NH,
        WeightLayout layout)
    {
        Begin();
        var plan = Plan(pivots, C, NH);
        int C3 = 3 * C, R = plan.R;
        bool oi = layout == WeightLayout.OutIn;
        long Blk(int o0) => oi ? (long)o0 * C : o0;   // offset of W's block of output columns o0…
        int ldw = oi ? C : C3;
        var (dx, dw, db) = (In(x), In(w), In(b));
        var dy = Out(qkv);   // every column written: K by its GEMM, Q and V by their gather-GEMMs (+ the identity part)
        // k[n, j] = Σ_c x[n, c]·W(c, C + j) (b_K = 0 is fixed)
        Sgemm(At(dy, C), dx.Ptr, At(dw, Blk(C)), N, C, C, C, ldw, C3, false, oi, false);
        // q_seg[n, j] = Σ_i x[n, R[i]]·W(R[i], col0 + j), v likewise: mapK gathers x's columns and W's input rows
        // (K = R); overwrites, so with R = 0 (one head) the product is 0 and the identity part below is all of q and v.
        foreach (var (col0, width, ri) in plan.Segments)
            SgemmMapped(At(dy, col0), dx.Ptr, At(dw, Blk(col0)), N, width, R, C, ldw, C3, false, oi, false,
                0, At4(plan.Rest, (long)ri * R), 0);
        // + x[:, P] (+ b_Q)
        Op("matmul.cu", "fixed_qkv_pivot_fwd", G(CudaDevice.Blocks((long)N * 2 * C, Block)), Block, 0,
            dy, dx, db, plan.Pcol, N, C);
        Done();
    }

    public void FixedQkvBackward(Tensor<float> dx, Tensor<float> dW, Tensor<float> db, Tensor<float> dQkv, Tensor<float> x,
        Tensor<float> w, int[][] pivots, int N, int C, int NH, WeightLayout layout)
    {
        Begin();
        var plan = Plan(pivots, C, NH);
        int C3 = 3 * C, R = plan.R;
        bool oi = layout == WeightLayout.OutIn;
        long Blk(int o0) => oi ? (long)o0 * C : o0;
        int ldw = oi ? C : C3;
        var (ddy, dxx, dw) = (In(dQkv), In(x), In(w));
        var (ddx, ddW, ddb) = (InOut(dx), InOut(dW), InOut(db));
        // K: dx[n, c] += Σ_j dy[n, C + j]·W(c, C + j)
        Sgemm(ddx.Ptr, At(ddy, C), At(dw, Blk(C)), N, C, C, C3, ldw, C, false, !oi, true);
        // dW(c, C + j) += Σ_n x[n, c]·dy[n, C + j]: InOut as [c, j] = xᵀ·dK; OutIn as [j, c] = dKᵀ·x
        if (oi) Sgemm(At(ddW, Blk(C)), At(ddy, C), dxx.Ptr, C, C, N, C3, C, C, true, false, true);
        else Sgemm(At(ddW, Blk(C)), dxx.Ptr, At(ddy, C), C, C, N, C, C3, C3, true, false, true);
        foreach (var (col0, width, ri) in plan.Segments)
        {
            ulong rest = At4(plan.Rest, (long)ri * R);
            // dW(R[i], col0 + j) += Σ_n x[n, R[i]]·dy[n, col0 + j]
            if (oi)   // as [j, i] = dy_segᵀ·x_R: op(B) = x with its columns gathered (mapN), C's columns scattered by mapN
                SgemmMapped(At(ddW, Blk(col0)), At(ddy, col0), dxx.Ptr, width, R, N, C3, C, C, true, false, true, 0, 0, rest);
            else      // as [i, j] = x_Rᵀ·dy_seg: op(A) = xᵀ with its rows gathered (mapM), C's rows scattered by mapM
                SgemmMapped(At(ddW, Blk(col0)), dxx.Ptr, At(ddy, col0), R, width, N, C, C3, C3, true, false, true, rest, 0, 0);
            // dx[n, R[i]] += Σ_j dy[n, col0 + j]·W(R[i], col0 + j): op(B)(j, i) = W(R[i], col0 + j), columns mapped
            // (InOut: transposed read of row R[i]; OutIn: row j, column R[i]); C's columns scattered by mapN. Segments
            // run one after another on the stream, so their writes to dx never race.
            SgemmMapped(ddx.Ptr, At(ddy, col0), At(dw, Blk(col0)), N, R, width, C3, ldw, C, false, !oi, true, 0, 0, rest);
        }
        // dx[:, P] += the identity blocks' gradient
        Op("matmul.cu", "fixed_qkv_pivot_bwd", G(CudaDevice.Blocks((long)N * C, Block)), Block, 0,
            ddx, ddy, plan.InvStart, plan.InvCols, N, C);
        // db_Q += Σ_n dq[n, :] (b_K and b_V are fixed: no gradient)
        ColumnSums(ddb, ddy.Ptr, N, C, C3);
        Done();
    }

    // ------------------------------------------------------------------ attention

    /// <summary>Rows per block of attention_bwd_delta (a warp each); the largest head size the kernels take.</summary>
    public const int AttentionRows = 4, AttentionMaxHeadSize = 128;

    /// <summary>
    /// The attention kernels' head-size bound (32, 64 or 128: the suffix of their names, attention_fwd_64 …) and tile
    /// (queries and keys per tile) for head size <paramref name="hs"/>.
    /// </summary>
    public static (int HeadBound, int Tile) AttentionShape(int hs) => hs <= 32 ? (32, 64) : hs <= 64 ? (64, 64) : (128, 32);

    /// <summary>Dynamic shared memory of the forward: tile × (bound + 4) tiles of q, k and v, tile × (tile + 4) for P,
    /// and two rows of a tile (attention.cu's AttTile::FwdFloats).</summary>
    public static uint AttentionForwardShared(int hs)
    {
        var (hm, bt) = AttentionShape(hs);
        return (uint)((3 * bt * (hm + 4) + bt * (bt + 4) + 2 * bt) * 4);
    }

    /// <summary>Dynamic shared memory of the backward's tiled kernels: tile × (bound + 4) tiles of k, v, q and dy,
    /// tile × (tile + 4) for P or dS, and a tile each of lse, D and key flags (attention.cu's AttTile::Floats).</summary>
    public static uint AttentionBackwardShared(int hs)
    {
        var (hm, bt) = AttentionShape(hs);
        return (uint)((4 * bt * (hm + 4) + bt * (bt + 4) + 3 * bt) * 4);
    }

    /// <summary>
    /// Whether attention with head size <paramref name="hs"/> runs on the tensor cores (attention.cu's <c>*_tc</c>
    /// kernels, mma.sync with bf16 operands and float32 accumulation): bf16 storage on an sm_80+ device
    /// (<see cref="TensorCores"/>, so <c>MT_CUDA_TC=0</c> turns it off too) and a head size that is a multiple of 16 (the
    /// mma's k). Other head sizes, and float32 storage, use the CUDA-core kernels.
    /// </summary>
    public bool AttentionOnTensorCores(int hs) => TensorCores && hs % 16 == 0 && hs <= AttentionMaxHeadSize;

    // ... and the buffers allow the kernels' 16-byte loads (device allocations always do; an offset view might not)
    bool AttentionTc(int hs, params DeviceBuffer[] buffers) => AttentionOnTensorCores(hs) && buffers.All(b => (b.Ptr & 15) == 0);

    /// <summary>
    /// The tensor-core kernels' tiles for head size <paramref name="hs"/> (attention.cu's AttTc): head-size bound, queries
    /// per forward block (FBQ), keys (dkdv) or queries (dq) per backward block (BR), and the streamed tile of keys or
    /// queries (FBK = BB).
    /// </summary>
    public static (int HeadBound, int ForwardRows, int BackwardRows, int Stream) AttentionTcShape(int hs)
    {
        int hm = AttentionShape(hs).HeadBound;
        return (hm, hm <= 64 ? 128 : 64, 64, hm <= 64 ? 64 : 32);
    }

    /// <summary>Dynamic shared memory (bytes) of the tensor-core forward, dkdv and dq kernels (AttTc::FwdBytes,
    /// DkdvBytes, DqBytes): two stages of bf16 tiles with rows padded by 8 elements, and float32 rows of key flags or of
    /// lse and D; dkdv with head bound 128 also keeps its block's keys and values.</summary>
    public static (uint Fwd, uint Dkdv, uint Dq) AttentionTcShared(int hs)
    {
        var (hm, _, br, bb) = AttentionTcShape(hs);
        int ldr = hm + 8, ldt = bb + 8;
        return ((uint)(2 * (bb * ldr + hm * ldt) * 2 + 2 * bb * 4),
                (uint)(2 * (2 * bb * ldr + 2 * hm * ldt) * 2 + 2 * 2 * bb * 4 + (hm > 64 ? 2 * br * ldr * 2 : 0)),
                (uint)(2 * (2 * bb * ldr + hm * ldt) * 2 + 2 * bb * 4));
    }

    /// <summary>The backward recomputes the probabilities from qkv and lse: training needs no pattern.</summary>
    public bool AttentionBackwardReadsPattern => false;

    public void AttentionForward(Tensor<float> y, Tensor<float>? att, Tensor<float> lse, Tensor<float> qkv, ReadOnlySpan<int> keyMask,
        int B, int T, int C, int NH, bool causal)
    {
        Begin();
        int hs = C / NH;
        if (hs > AttentionMaxHeadSize) throw new InputException($"cuda attention: head size {hs} is over {AttentionMaxHeadSize}");
        var mask = keyMask.IsEmpty ? null : Ints("mask", keyMask);
        AttentionForwardOnDevice(Out(y), Out(lse, f32: true), att is null ? null : Out(att), In(qkv), mask, B, T, C, NH, causal);
        Done();
    }

    /// <summary>
    /// The forward on device buffers (y, att, qkv in the backend's storage, lse float32; att and the key mask optional):
    /// on the tensor cores where <see cref="AttentionOnTensorCores"/> (the pattern, when asked, from attention_pattern
    /// once lse is known), else on the CUDA cores. <see cref="KernelBench"/> times this.
    /// </summary>
    public void AttentionForwardOnDevice(DeviceBuffer y, DeviceBuffer lse, DeviceBuffer? att, DeviceBuffer qkv, DeviceBuffer? mask,
        int B, int T, int C, int NH, bool causal)
    {
        int hs = C / NH, c = causal ? 1 : 0;
        var (hm, bt) = AttentionShape(hs);
        if (AttentionTc(hs, y, qkv))
        {
            Device.Launch("attention.cu#bf16", hm == 32 ? "attention_fwd_tc_32_bf16" : hm == 64 ? "attention_fwd_tc_64_bf16" : "attention_fwd_tc_128_bf16",
                G(CudaDevice.Blocks(T, AttentionTcShape(hs).ForwardRows), (uint)(B * NH)), 128, AttentionTcShared(hs).Fwd,
                y, lse, qkv, mask, B, T, C, NH, c);
            if (att is not null)
                Device.Launch("attention.cu#bf16", hm == 32 ? "attention_pattern_32_bf16" : hm == 64 ? "attention_pattern_64_bf16" : "attention_pattern_128_bf16",
                    G(CudaDevice.Blocks(T, bt), (uint)(B * NH)), 256, AttentionForwardShared(hs), att, lse, qkv, mask, B, T, C, NH, c);
            return;
        }
        Op("attention.cu", hm == 32 ? "attention_fwd_32" : hm == 64 ? "attention_fwd_64" : "attention_fwd_128",
            G(CudaDevice.Blocks(T, bt), (uint)(B * NH)), 256, AttentionForwardShared(hs), y, lse, att, qkv, mask, B, T, C, NH, c);
    }

    // Flash-style backward (attention.cu): D = rowsum(dy ∘ y), then one kernel per key tile for dK and dV and one per
    // query tile for dQ, each recomputing P from q, k and lse; no T×T buffer. att is not read.
    public void AttentionBackward(Tensor<float> dqkv, Tensor<float> dy, Tensor<float> qkv, Tensor<float> y, Tensor<float>? att,
        Tensor<float> lse, ReadOnlySpan<int> keyMask, int B, int T, int C, int NH, bool causal)
    {
        Begin();
        int hs = C / NH;
        if (hs > AttentionMaxHeadSize) throw new InputException($"cuda attention: head size {hs} is over {AttentionMaxHeadSize}");
        var (ddy, dq, dlse) = (In(dy), In(qkv), In(lse, f32: true));
        var mask = keyMask.IsEmpty ? null : Ints("mask", keyMask);
        var dd = InOut(dqkv);
        AttentionBackwardOnDevice(dd, ddy, dq, In(y), dlse, mask, B, T, C, NH, causal);
        Done();
    }

    /// <summary>The backward on device buffers: dqkv += the gradient (tensor cores where
    /// <see cref="AttentionOnTensorCores"/>, else CUDA cores). <see cref="KernelBench"/> times this.</summary>
    public void AttentionBackwardOnDevice(DeviceBuffer dqkv, DeviceBuffer dy, DeviceBuffer qkv, DeviceBuffer y, DeviceBuffer lse,
        DeviceBuffer? mask, int B, int T, int C, int NH, bool causal)
    {
        int hs = C / NH, c = causal ? 1 : 0;
        var delta = Scratch("attention.delta", 4L * B * NH * T);
        Op("attention.cu", "attention_bwd_delta", G(CudaDevice.Blocks(T, AttentionRows), (uint)(B * NH)), 32 * AttentionRows, 0,
            delta, dy, y, B, T, C, NH);
        var (hm, bt) = AttentionShape(hs);
        if (AttentionTc(hs, dqkv, dy, qkv))
        {
            var grid = G(CudaDevice.Blocks(T, AttentionTcShape(hs).BackwardRows), (uint)(B * NH));
            var sh = AttentionTcShared(hs);
            Device.Launch("attention.cu#bf16", hm == 32 ? "attention_bwd_dkdv_tc_32_bf16" : hm == 64 ? "attention_bwd_dkdv_tc_64_bf16" : "attention_bwd_dkdv_tc_128_bf16",
                grid, 128, sh.Dkdv, dqkv, dy, qkv, lse, delta, mask, B, T, C, NH, c);
            Device.Launch("attention.cu#bf16", hm == 32 ? "attention_bwd_dq_tc_32_bf16" : hm == 64 ? "attention_bwd_dq_tc_64_bf16" : "attention_bwd_dq_tc_128_bf16",
                grid, 128, sh.Dq, dqkv, dy, qkv, lse, delta, mask, B, T, C, NH, c);
            return;
        }
        var tiles = G(CudaDevice.Blocks(T, bt), (uint)(B * NH));
        uint shared = AttentionBackwardShared(hs);
        Op("attention.cu", hm == 32 ? "attention_bwd_dkdv_32" : hm == 64 ? "attention_bwd_dkdv_64" : "attention_bwd_dkdv_128",
            tiles, 256, shared, dqkv, dy, qkv, lse, delta, mask, B, T, C, NH, c);
        Op("attention.cu", hm == 32 ? "attention_bwd_dq_32" : hm == 64 ? "attention_bwd_dq_64" : "attention_bwd_dq_128",
            tiles, 256, shared, dqkv, dy, qkv, lse, delta, mask, B, T, C, NH, c);
    }

    // ------------------------------------------------------------------ gelu, residual

    public void GeluForward(Tensor<float> y, Tensor<float> x, int n, GeluForm form)
    {
        Begin();
        var dx = In(x);
        Op("gelu.cu", form == GeluForm.Tanh ? "gelu_tanh_fwd" : "gelu_erf_fwd", G(CudaDevice.Blocks(n, Block)), Block, 0,
            Out(y), dx, n);
        Done();
    }

    public void GeluBackward(Tensor<float> dx, Tensor<float> dy, Tensor<float> x, int n, GeluForm form)
    {
        Begin();
        var (ddy, dxx) = (In(dy), In(x));
        Op("gelu.cu", form == GeluForm.Tanh ? "gelu_tanh_bwd" : "gelu_erf_bwd", G(CudaDevice.Blocks(n, Block)), Block, 0,
            InOut(dx), ddy, dxx, n);
        Done();
    }

    public void PreluForward(Tensor<float> y, Tensor<float> x, Tensor<float> slopes, int N, int Fdim)
    {
        Begin();
        var (dx, da) = (In(x), In(slopes));
        Op("gelu.cu", "prelu_fwd", G(CudaDevice.Blocks((long)N * Fdim, Block)), Block, 0, Out(y), dx, da, N, Fdim);
        Done();
    }

    public void PreluBackward(Tensor<float> dx, Tensor<float> dslopes, Tensor<float> dy, Tensor<float> x, Tensor<float> slopes, int N, int Fdim)
    {
        Begin();
        var (ddy, dxx, da) = (In(dy), In(x), In(slopes));
        Op("gelu.cu", "prelu_bwd_dx", G(CudaDevice.Blocks((long)N * Fdim, Block)), Block, 0, InOut(dx), ddy, dxx, da, N, Fdim);
        var partial = Scratch("columns.partial", 4L * ColumnChunks(N) * Fdim);
        Op("gelu.cu", "prelu_bwd_slopes_partials", ColumnGrid(Fdim, N), Block, 0, partial, ddy, dxx, N, Fdim);
        AddColumnPartials(InOut(dslopes), partial.Ptr, N, Fdim);
        Done();
    }

    public void ResidualForward(Tensor<float> y, Tensor<float> a, Tensor<float> b, int n)
    {
        Begin();
        var (da, db) = (In(a), In(b));
        Op("residual.cu", "residual_fwd", G(CudaDevice.Blocks(n, Block)), Block, 0, Out(y), da, db, n);
        Done();
    }

    public void ResidualBackward(Tensor<float> da, Tensor<float> db, Tensor<float> dy, int n)
    {
        Begin();
        var ddy = In(dy);
        Op("residual.cu", "residual_bwd", G(CudaDevice.Blocks(n, Block)), Block, 0, InOut(da), InOut(db), ddy, n);
        Done();
    }

    // ------------------------------------------------------------------ cross-entropy

    public (double LossSum, int Count) CrossEntropyForward(Tensor<float> lse, Tensor<float> logits, ReadOnlySpan<int> targets, int N, int V)
    {
        Begin();
        var loss = Scratch("ce.loss", 4L * N);
        var total = Scratch("ce.total", 8);
        var dlogits = In(logits);
        Op("crossentropy.cu", "crossentropy_fwd", G((uint)N), 256, 0, Out(lse, f32: true), loss, dlogits, Ints("targets", targets), N, V);
        Device.Launch("crossentropy.cu", "loss_sum", G(1), 256, 0, total, loss, N);   // ignored rows hold 0
        Done();
        Span<double> sum = stackalloc double[1];
        Device.Download(sum, total);   // the loss readout: 8 bytes
        int count = 0;
        foreach (int t in targets) if (t != -100) count++;
        return (sum[0], count);
    }

    public void CrossEntropyBackward(Tensor<float> dlogits, Tensor<float> logits, Tensor<float> lse, ReadOnlySpan<int> targets,
        int N, int V, double scale)
    {
        Begin();
        bool alias = ReferenceEquals(dlogits, logits);
        var lg = In(logits);
        var dl = alias ? InOut(dlogits) : Out(dlogits);
        Op("crossentropy.cu", "crossentropy_bwd", G((uint)N), 256, 0, dl, lg, In(lse, f32: true), Ints("targets", targets), N, V, (float)scale);
        Done();
    }

    // ------------------------------------------------------------------ optimizer, norm

    /// <summary>
    /// With bf16 storage: the weight's float32 master (created on its first step from the current values) and its bf16
    /// copy, for an optimizer kernel that updates the master and rewrites the copy.
    /// </summary>
    (DeviceBuffer Master, DeviceBuffer Copy) MasterAndCopy(Tensor<float> param)
    {
        var copy = InOut(param);
        var st = (CudaStorage)param.DeviceStorage!;
        // HostView: the exact float32 values when the host holds them (a fresh or loaded weight), else the bf16 ones.
        return (st.Master ?? st.MakeMaster(param.HostView), copy);
    }

    public void AdamW(Tensor<float> param, Tensor<float> grad, Tensor<float> m, Tensor<float> v, in AdamWStep s)
    {
        Begin();
        float decay = (float)(1 - s.LearningRate * s.WeightDecay);
        float stepSize = (float)(s.LearningRate / (1 - Math.Pow(s.Beta1, s.Step)));
        float invSqrtBc2 = (float)(1 / Math.Sqrt(1 - Math.Pow(s.Beta2, s.Step)));
        long n = param.Length;
        var (dm, dv) = (InOut(m, f32: true), InOut(v, f32: true));   // moments: float32 in either storage
        var g = In(grad);
        if (bf)
        {
            var (master, copy) = MasterAndCopy(param);
            Device.Launch("adamw.cu", "adamw_bf16", G(CudaDevice.Blocks(n, Block)), Block, 0, master, copy, g, dm, dv, n,
                (float)s.Beta1, (float)s.Beta2, decay, stepSize, invSqrtBc2, (float)s.Epsilon, (float)s.GradScale);
        }
        else
            Device.Launch("adamw.cu", "adamw_f32", G(CudaDevice.Blocks(n, Block)), Block, 0, InOut(param), g, dm, dv, n,
                (float)s.Beta1, (float)s.Beta2, decay, stepSize, invSqrtBc2, (float)s.Epsilon, (float)s.GradScale);
        Done(optimizer: true);
    }

    // ------------------------------------------------------------------ gauge-fixed training: free entries only

    // Index tables (sorted flat indices of a parameter's free or fixed entries) on the device, cached per array: the
    // optimizer keeps the same arrays for the whole run.
    readonly ConditionalWeakTable<int[], DeviceBuffer> indexTables = new();

    DeviceBuffer IndexTable(int[] idx)
    {
        if (indexTables.TryGetValue(idx, out var b)) return b;
        b = Device.Alloc(Math.Max(idx.Length, 1) * 4L);
        Device.Upload<int>(b, idx);
        indexTables.AddOrUpdate(idx, b);
        return b;
    }

    public void ZeroEntries(Tensor<float> t, int[] indices)
    {
        Begin();
        if (indices.Length == 0) return;
        Device.Launch("adamw.cu", bf ? "zero_entries_bf16" : "zero_entries_f32", G(CudaDevice.Blocks(indices.Length, Block)), Block, 0,
            InOut(t), IndexTable(indices), (long)indices.Length);
        Done();
    }

    public void MaskedAdamW(Tensor<float> param, Tensor<float> grad, Tensor<float> m, Tensor<float> v, int[] free, in AdamWStep s)
    {
        Begin();
        if (free.Length == 0) return;
        if (m.Length != free.Length || v.Length != free.Length)
            throw new ArgumentException($"masked AdamW: moments of {m.Length}/{v.Length} entries for {free.Length} free entries");
        float decay = (float)(1 - s.LearningRate * s.WeightDecay);
        float stepSize = (float)(s.LearningRate / (1 - Math.Pow(s.Beta1, s.Step)));
        float invSqrtBc2 = (float)(1 / Math.Sqrt(1 - Math.Pow(s.Beta2, s.Step)));
        long n = free.Length;
        var (dm, dv, g, idx) = (InOut(m, f32: true), InOut(v, f32: true), In(grad), IndexTable(free));
        if (bf)
        {
            var (master, copy) = MasterAndCopy(param);
            Device.Launch("adamw.cu", "adamw_masked_bf16", G(CudaDevice.Blocks(n, Block)), Block, 0, master, copy, g, dm, dv, idx, n,
                (float)s.Beta1, (float)s.Beta2, decay, stepSize, invSqrtBc2, (float)s.Epsilon, (float)s.GradScale);
        }
        else
            Device.Launch("adamw.cu", "adamw_masked_f32", G(CudaDevice.Blocks(n, Block)), Block, 0, InOut(param), g, dm, dv, idx, n,
                (float)s.Beta1, (float)s.Beta2, decay, stepSize, invSqrtBc2, (float)s.Epsilon, (float)s.GradScale);
        Done(optimizer: true);
    }

    public void MaskedSgd(Tensor<float> param, Tensor<float> grad, int[] free, double learningRate, double weightDecay, double gradScale)
    {
        Begin();
        if (free.Length == 0) return;
        long n = free.Length;
        float decay = (float)(1 - learningRate * weightDecay), step = (float)(-learningRate * gradScale);
        var (g, idx) = (In(grad), IndexTable(free));
        if (bf)
        {
            var (master, copy) = MasterAndCopy(param);
            Device.Launch("adamw.cu", "sgd_masked_bf16", G(CudaDevice.Blocks(n, Block)), Block, 0, master, copy, g, idx, n, decay, step);
        }
        else
            Device.Launch("adamw.cu", "sgd_masked_f32", G(CudaDevice.Blocks(n, Block)), Block, 0, InOut(param), g, idx, n, decay, step);
        Done(optimizer: true);
    }

    public void AdamWZeroGrad(Tensor<float> param, Tensor<float> grad, Tensor<float> m, Tensor<float> v, in AdamWStep step, bool zeroGrad)
    {
        AdamW(param, grad, m, v, step);
        if (zeroGrad) Zero(grad);   // a memset queued after the update on the same stream
    }

    public void Sgd(Tensor<float> param, Tensor<float> grad, double learningRate, double weightDecay, double gradScale)
    {
        Begin();
        long n = param.Length;
        float decay = (float)(1 - learningRate * weightDecay), step = (float)(-learningRate * gradScale);
        var g = In(grad);
        if (bf)
        {
            var (master, copy) = MasterAndCopy(param);
            Device.Launch("adamw.cu", "sgd_bf16", G(CudaDevice.Blocks(n, Block)), Block, 0, master, copy, g, n, decay, step);
        }
        else
            Device.Launch("adamw.cu", "sgd_f32", G(CudaDevice.Blocks(n, Block)), Block, 0, InOut(param), g, n, decay, step);
        Done(optimizer: true);
    }

    public void SgdMomentumZeroGrad(Tensor<float> param, Tensor<float> grad, Tensor<float> buf, double learningRate, double momentum,
        bool nesterov, double weightDecay, double gradScale)
    {
        Begin();
        long n = param.Length;
        var (g, b) = (InOut(grad), InOut(buf, f32: true));
        object?[] rest = [(float)learningRate, (float)momentum, nesterov ? 1 : 0, (float)weightDecay, (float)gradScale];
        if (bf)
        {
            var (master, copy) = MasterAndCopy(param);
            Device.Launch("adamw.cu", "sgdm_bf16", G(CudaDevice.Blocks(n, Block)), Block, 0, [master, copy, g, b, n, .. rest]);
        }
        else
            Device.Launch("adamw.cu", "sgdm_f32", G(CudaDevice.Blocks(n, Block)), Block, 0, [InOut(param), g, b, n, .. rest]);
        Done(optimizer: true);
    }

    public void AddToColumns(Tensor<float> y, ReadOnlySpan<float> b, int N, int ld, int col0)
    {
        Begin();
        var db = Scratch("columns.vector", 4L * b.Length);
        Device.Upload(db, b);
        Op("matmul.cu", "add_to_columns", G(CudaDevice.Blocks((long)N * b.Length, Block)), Block, 0, InOut(y), db, N, b.Length, ld, col0);
        Done();
    }

    public void SgdZeroGrad(Tensor<float> param, Tensor<float> grad, double learningRate, double weightDecay, double gradScale, bool zeroGrad)
    {
        Sgd(param, grad, learningRate, weightDecay, gradScale);
        if (zeroGrad) Zero(grad);
    }

    /// <summary>t ← 0 on the device (attaching a device copy if needed): no host traffic.</summary>
    public void Zero(Tensor<float> t)
    {
        Begin();
        if (t.DeviceStorage is not CudaStorage st || !ReferenceEquals(st.Device, Device)) Buf(t);   // keep an existing copy's element type
        t.Clear();
    }

    public double SumOfSquares(Tensor<float> g) => SumOfSquaresAll([g]);

    /// <summary>
    /// Every tensor's chunk sums into one partial buffer (one launch per tensor), one download of all of them, then per
    /// tensor the chunk sums added in float64 and the tensors in list order: the same additions as calling
    /// <see cref="SumOfSquares"/> tensor by tensor.
    /// </summary>
    public double SumOfSquaresAll(IReadOnlyList<Tensor<float>> gs)
    {
        Begin();
        var chunks = new int[gs.Count];
        long total = 0;
        for (int i = 0; i < gs.Count; i++) { chunks[i] = (int)CudaDevice.Blocks(gs[i].Length, GlobalNormChunk); total += chunks[i]; }
        if (total == 0) return 0;
        var partial = Scratch("sumsq.partial", 4 * total);
        long at = 0;
        for (int i = 0; i < gs.Count; i++)
        {
            if (chunks[i] == 0) continue;
            var g = In(gs[i]);   // bf16 gradients are summed from bf16 storage
            Device.Launch("global_norm.cu", bf ? "sumsq_chunks_bf16" : "sumsq_chunks", G((uint)chunks[i]), 256, 0, At4(partial, at), g, (long)gs[i].Length, GlobalNormChunk);
            at += chunks[i];
        }
        var host = new float[total];
        Device.Download<float>(host, partial);
        double s = 0;
        at = 0;
        for (int i = 0; i < gs.Count; i++)
        {
            double t = 0;
            for (int c = 0; c < chunks[i]; c++) t += host[at + c];
            at += chunks[i];
            s += t;
        }
        return s;
    }

    public void Dispose()
    {
        // Tensors own their device copies (freed with them); the backend owns its scratch and index tables.
        foreach (var b in scratch.Values) b.Dispose();
        scratch.Clear();
        foreach (var kv in plans) { kv.Value.Rest.Dispose(); kv.Value.Pcol.Dispose(); kv.Value.InvStart.Dispose(); kv.Value.InvCols.Dispose(); }
        plans.Clear();
        foreach (var kv in indexTables) kv.Value.Dispose();
        indexTables.Clear();
    }
}
