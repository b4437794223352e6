using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MiniTransformer.Backends.Cpu;

/// <summary>
/// General matrix product on row-major buffers: C[M,N] (+)= op(A)·op(B), where op(A) is [M,K]
/// (stored [M,K] with leading dimension lda, or [K,M] when transA) and op(B) is [K,N]
/// (stored [K,N], or [N,K] when transB). Transposes are never materialised.
/// </summary>
/// <remarks>
/// <para>Algorithm (GotoBLAS / BLIS structure, written from the published description):</para>
/// <code>
/// for jc in [0,N) step NC                        — column block of C and B
///   for pc in [0,K) step KC                      — rank-KC update
///     pack B[pc:pc+KC, jc:jc+NC] → Bp            — KC×NC, lives in L2/L3
///     for ic in [0,M) step MC
///       pack A[ic:ic+MC, pc:pc+KC] → Ap          — MC×KC, lives in L2
///       for jr in [0,NC) step NR                 — B micro-panel KC×NR stays in L1
///         for ir in [0,MC) step MR
///           micro-kernel: C[ic+ir.., jc+jr..] (+)= Ap[ir]·Bp[jr]   (MR×NR tile in registers)
/// </code>
/// <para>Packed layouts. Ap is a sequence of micro-panels of MR rows; within a micro-panel the
/// element (row r, depth k) is at [k·MR + r], so each step of the kernel reads MR consecutive
/// scalars (broadcast one at a time). Bp is a sequence of micro-panels of NR columns; element
/// (depth k, column j) is at [k·NR + j], so each step reads NR consecutive scalars (two vectors).
/// Rows beyond M and columns beyond N are packed as zeros, so the kernel always runs a full
/// MR×NR tile; edge tiles are computed into a scratch tile and only the valid part is stored.
/// The packing routines read either storage order, which is how transA/transB are honoured.</para>
/// <para>Threads: C is split into disjoint column ranges (whole NR panels) or, when N is narrow,
/// row ranges (whole MR panels); each worker runs the full blocked loop on its range with its own
/// packing buffers. The blocking (KC steps, k order inside the kernel) does not depend on the
/// thread count or scheduling, so every element of C is summed in exactly the same order: results
/// are bit-identical for any thread count.</para>
/// <para>Small problems (M·N·K below <see cref="SmallWork"/>) and very short ones (M below
/// <see cref="DirectMaxRows"/>, e.g. one-token generation) skip packing and use a direct
/// vectorised loop, which is also deterministic.</para>
/// </remarks>
/// <summary>
/// Structure of a product the caller knows about (square index space i, j, k over the rows of C, the columns of C
/// and the depth): lets the packed path skip work that cannot change the result. Causal attention is the user.
/// </summary>
public enum GemmTriangle
{
    /// <summary>A general product.</summary>
    None,
    /// <summary>Only C[i, j] with j ≤ i is wanted; register tiles wholly above the diagonal are not computed and
    /// those elements of C are left as they were.</summary>
    LowerC,
    /// <summary>op(A)[i, k] = 0 for k &gt; i: each row tile's FMA chain stops after its last non-zero depth (the
    /// skipped terms are exact zeros, so C is the same).</summary>
    LowerA,
    /// <summary>op(A)[i, k] = 0 for k &lt; i: each row tile's FMA chain starts at its first non-zero depth.</summary>
    UpperA,
}

public static class Gemm
{
    /// <summary>Upper bound on worker threads (default: all logical processors). Set to 1 for single-threaded runs.</summary>
    public static int MaxThreads { get; set; } = Environment.ProcessorCount;

    /// <summary>Below this many multiply-adds the packed path's overhead is not worth paying.</summary>
    internal const long SmallWork = 32 * 1024;

    /// <summary>Problems with fewer rows than this use the direct (unpacked) path: packing would waste most of an MR tile.</summary>
    internal const int DirectMaxRows = 4;

    /// <summary>Minimum multiply-adds per worker before another thread is used.</summary>
    private const long WorkPerThread = 1L << 20;

    /// <summary>Tasks per worker thread in the packed path (load balancing against a busy machine).</summary>
    private const int TasksPerThread = 4;

    public static unsafe void Multiply<T>(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<T> A, int lda, ReadOnlySpan<T> B, int ldb, Span<T> C, int ldc, bool accumulate,
        GemmTriangle triangle = GemmTriangle.None)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(transA, transB, M, N, K, A.Length, lda, B.Length, ldb, C.Length, ldc);
        if (M == 0 || N == 0)
            return;

        fixed (T* pa = A)
        fixed (T* pb = B)
        fixed (T* pc = C)
        {
            if (K == 0)
            {
                if (!accumulate)
                    for (int i = 0; i < M; i++)
                        new Span<T>(pc + (nint)i * ldc, N).Clear();
                return;
            }

            var job = new Job<T>(transA, transB, M, N, K, pa, lda, pb, ldb, pc, ldc, accumulate, triangle);
            long work = (long)M * N * K;
            int threads = (int)Math.Clamp(work / WorkPerThread, 1, Math.Max(1, MaxThreads));

            if (work < SmallWork || M < DirectMaxRows)
            {
                // Direct path: split columns in chunks of 64 (keeps vector chunks aligned to the split).
                int chunks = (N + 63) / 64;
                threads = Math.Min(threads, chunks);
                if (threads <= 1)
                    Direct(job, 0, N);
                else
                    Parallelism.Run(threads, threads, t =>
                    {
                        var (c0, c1) = Split(chunks, threads, t);
                        Direct(job, c0 * 64, Math.Min(N, c1 * 64));
                    });
                return;
            }

            int mr = Blocking<T>.MR, nr = Blocking<T>.NR;
            int nPanels = (N + nr - 1) / nr, mPanels = (M + mr - 1) / mr;
            // Each task re-packs the operand it does not split: splitting N re-packs A (M×K) per task, splitting M
            // re-packs B (K×N). Split the dimension whose other operand is the smaller one (M ≤ N: split N), unless
            // that dimension has too few panels to share; e.g. the lm-head weight gradient (M = 50257 vocabulary rows,
            // N = 768) splits M, so no task copies the 50257×256 gradient block more than once.
            bool nOk = nPanels >= 2 * threads, mOk = mPanels >= 2 * threads;
            bool splitN = nOk && mOk ? M <= N : nOk || nPanels >= mPanels;
            // Several tasks per thread (work stealing keeps both cores busy when one is disturbed), but only as many
            // as keep re-packing the shared operand small next to the task's arithmetic: the copy costs about one
            // cycle per element against splitDim/(16·tasks) FMA cycles per element, so at least 512 columns
            // (or rows) per thread per extra task; always a multiple of the thread count.
            int panels = splitN ? nPanels : mPanels;
            int splitDim = splitN ? N : M;
            int perThread = Math.Clamp(splitDim / (512 * threads), 1, TasksPerThread);
            int tasks = Math.Min(threads * perThread, panels / (splitN ? 4 : 6));
            if (threads <= 1 || tasks <= 1)
            {
                Blocked(job, 0, M, 0, N);
                return;
            }
            tasks = Math.Max(tasks, threads);
            Parallelism.Run(tasks, threads, t =>
            {
                var (p0, p1) = Split(panels, tasks, t);
                if (splitN)
                    Blocked(job, 0, M, p0 * nr, Math.Min(N, p1 * nr));
                else
                    Blocked(job, p0 * mr, Math.Min(M, p1 * mr), 0, N);
            });
        }
    }

    private static void Validate(bool transA, bool transB, int M, int N, int K,
        int aLen, int lda, int bLen, int ldb, int cLen, int ldc)
    {
        if (M < 0 || N < 0 || K < 0)
            throw new ArgumentOutOfRangeException(nameof(M), $"Negative GEMM dimension: M={M}, N={N}, K={K}.");
        // Stored shapes: A is [M,K] or [K,M]; B is [K,N] or [N,K]; C is [M,N].
        Check("A", transA ? K : M, transA ? M : K, aLen, lda);
        Check("B", transB ? N : K, transB ? K : N, bLen, ldb);
        Check("C", M, N, cLen, ldc);

        static void Check(string name, int rows, int cols, int len, int ld)
        {
            if (ld < Math.Max(1, cols))
                throw new ArgumentException($"Leading dimension of {name} ({ld}) is smaller than its row length ({cols}).");
            if (rows > 0 && cols > 0 && (long)(rows - 1) * ld + cols > len)
                throw new ArgumentException($"Buffer {name} has {len} elements; a [{rows},{cols}] matrix with leading dimension {ld} needs {(long)(rows - 1) * ld + cols}.");
        }
    }

    private static (int Start, int End) Split(int count, int parts, int index)
    {
        int q = count / parts, r = count % parts;
        int start = index * q + Math.Min(index, r);
        return (start, start + q + (index < r ? 1 : 0));
    }

    /// <summary>Arguments of one call, as raw pointers (the spans are pinned for the duration of the call).</summary>
    private readonly unsafe struct Job<T>(bool transA, bool transB, int m, int n, int k,
        T* a, int lda, T* b, int ldb, T* c, int ldc, bool accumulate, GemmTriangle triangle) where T : unmanaged
    {
        public readonly bool TransA = transA, TransB = transB, Accumulate = accumulate;
        public readonly GemmTriangle Triangle = triangle;
        public readonly int M = m, N = n, K = k, Lda = lda, Ldb = ldb, Ldc = ldc;
        public readonly T* A = a, B = b, C = c;
    }

    // ------------------------------------------------------------------------------------------
    // Blocking parameters
    // ------------------------------------------------------------------------------------------

    /// <summary>
    /// Register and cache blocking per element type (target: AVX-512, 32 KiB L1d, 1 MiB L2 per core).
    /// <list type="bullet">
    /// <item>MR × NR: register tile. AVX-512: 8 rows × 2 vectors (8×32 floats / 8×16 doubles) =
    /// 16 accumulators + 2 B vectors + 1 broadcast of the 32 zmm registers. AVX2 fallback: 6 × 2 vectors
    /// (12 accumulators of the 16 ymm registers).</item>
    /// <item>KC: depth of a rank-KC update (K is cut into equal blocks of at most KC). The B micro-panel
    /// (KC × NR) is re-used by every MR-row micro-panel of A and should stay in L1: 256 × 32 floats × 4 B
    /// = 32 KiB (doubles: 256 × 16 × 8 B). Larger KC means fewer read-modify-write passes over C;
    /// measured on Zen 4, KC = 128…320 are within ±4 %, 256 was among the best for both types.</item>
    /// <item>MC: rows of the packed A block (MC × KC) that stays in L2: 144 × 256 × 4 B = 144 KiB for
    /// floats, 72 × 256 × 8 B for doubles, leaving L2 room for the streaming B panels (MC = 96…240
    /// measured equal within noise).</item>
    /// <item>NC: columns of the packed B block (KC × NC), streamed from L2/L3: 3072 × 256 × 4 B = 3 MiB
    /// per worker (in L3; only one B micro-panel at a time is hot).</item>
    /// </list>
    /// </summary>
    private static class Blocking<T> where T : unmanaged
    {
        public static readonly int MR = Vector512.IsHardwareAccelerated ? 8 : 6;
        public static readonly int NR = 2 * (Vector512.IsHardwareAccelerated ? Vector512<T>.Count : Vector256<T>.Count);
        public static readonly int KC = 256;
        public static readonly int MC = (Unsafe.SizeOf<T>() == 4 ? 144 : 72) / MR * MR;
        public static readonly int NC = (Unsafe.SizeOf<T>() == 4 ? 3072 : 1536) / NR * NR;
    }

    /// <summary>Per-thread packing buffers, 64-byte aligned, grown on demand and then reused (no steady-state allocation).</summary>
    private static unsafe class Buffers<T> where T : unmanaged
    {
        [ThreadStatic] private static T[]? s_a, s_b, s_row;

        public static T* A(int count) => Get(ref s_a, count);
        public static T* B(int count) => Get(ref s_b, count);
        public static T* Row(int count) => Get(ref s_row, count);

        private static T* Get(ref T[]? buffer, int count)
        {
            int pad = 64 / Unsafe.SizeOf<T>();
            if (buffer is null || buffer.Length < count + pad)
                buffer = GC.AllocateUninitializedArray<T>(count + pad, pinned: true);
            // Pinned-object-heap arrays never move, so the address is stable for the buffer's lifetime.
            nint p = (nint)Unsafe.AsPointer(ref buffer[0]);
            return (T*)((p + 63) & ~(nint)63);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Packed (blocked) path
    // ------------------------------------------------------------------------------------------

    /// <summary>Computes rows [i0,i1) × columns [j0,j1) of C with the blocked algorithm.</summary>
    private static unsafe void Blocked<T>(in Job<T> job, int i0, int i1, int j0, int j1)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int MR = Blocking<T>.MR, NR = Blocking<T>.NR, KC = Blocking<T>.KC, MC = Blocking<T>.MC, NC = Blocking<T>.NC;
        int K = job.K;
        // Split K into equal-ish blocks of at most KC (e.g. K=256 → 128+128 rather than 192+64), so no
        // pass over C is a short one. Depends only on K, so the summation order is fixed.
        int kBlocks = (K + KC - 1) / KC;
        KC = (K + kBlocks - 1) / kBlocks;
        int kcMax = Math.Min(KC, K);
        int ncMax = Math.Min(NC, (j1 - j0 + NR - 1) / NR * NR);
        int mcMax = Math.Min(MC, (i1 - i0 + MR - 1) / MR * MR);
        T* bp = Buffers<T>.B(kcMax * ncMax);
        T* ap = Buffers<T>.A(kcMax * mcMax);

        for (int jc = j0; jc < j1; jc += NC)
        {
            int nc = Math.Min(NC, j1 - jc);
            for (int pc = 0; pc < K; pc += KC)
            {
                int kc = Math.Min(KC, K - pc);
                bool overwrite = pc == 0 && !job.Accumulate;
                PackB(job, pc, kc, jc, nc, bp);
                for (int ic = i0; ic < i1; ic += MC)
                {
                    int mc = Math.Min(MC, i1 - ic);
                    PackA(job, ic, mc, pc, kc, ap);
                    MacroKernel(mc, nc, kc, ap, bp, job.C + (nint)ic * job.Ldc + jc, job.Ldc, overwrite,
                        job.Triangle, ic, jc, pc);
                }
            }
        }
    }

    /// <summary>
    /// Packs op(A)[i0:i0+mc, k0:k0+kc] into micro-panels of MR rows: element (r, k) of panel p is at
    /// dst[p·MR·kc + k·MR + r]. Rows past mc are zero.
    /// </summary>
    private static unsafe void PackA<T>(in Job<T> job, int i0, int mc, int k0, int kc, T* dst)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int MR = Blocking<T>.MR;
        nint lda = job.Lda;
        if (job.TransA)
        {
            // Stored [K,M]: walk the stored rows in order (one contiguous run of mc values per k, dealt out to the
            // micro-panels MR values at a time) rather than panel by panel, which would read MR values from each
            // of kc rows lda apart — a new page at every step for a wide A such as the lm-head gradient dYᵀ.
            int full = mc / MR, rest = mc - full * MR;
            nint panel = (nint)MR * kc;
            T* src = job.A + (nint)k0 * lda + i0;
            bool vec = Vector512.IsHardwareAccelerated;
            for (int k = 0; k < kc; k++, src += lda)
            {
                T* d = dst + (nint)k * MR;
                T* s = src;
                for (int p = 0; p < full; p++, s += MR, d += panel)
                {
                    if (vec) CopySmall((byte*)s, (byte*)d, MR * sizeof(T));
                    else for (int r = 0; r < MR; r++) d[r] = s[r];
                }
                if (rest > 0)
                {
                    int r = 0;
                    for (; r < rest; r++) d[r] = s[r];
                    for (; r < MR; r++) d[r] = T.Zero;
                }
            }
            return;
        }
        // Stored [M,K]: a transposing copy of MR stored rows per micro-panel (mr valid, the rest zero).
        for (int ir = 0; ir < mc; ir += MR, dst += MR * kc)
            PackTransposed(job.A + (nint)(i0 + ir) * lda + k0, lda, kc, Math.Min(MR, mc - ir), MR, dst);
    }

    /// <summary>
    /// Packs op(B)[k0:k0+kc, j0:j0+nc] into micro-panels of NR columns: element (k, j) of panel p is at
    /// dst[p·NR·kc + k·NR + j]. Columns past nc are zero.
    /// </summary>
    private static unsafe void PackB<T>(in Job<T> job, int k0, int kc, int j0, int nc, T* dst)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int NR = Blocking<T>.NR;
        nint ldb = job.Ldb;
        if (!job.TransB)
        {
            // Stored [K,N]: walk the stored rows in order, each one a contiguous run of nc values dealt out to the
            // panels (NR values each). Reading row by row keeps the hardware prefetcher streaming; reading panel by
            // panel (NR values of each of kc rows, one ldb apart) would touch a new page at every step once
            // ldb·4 B ≥ 4 KiB and stall on each line (measured 2.5 cycles per element on a 768×2304 weight).
            int full = nc / NR, rest = nc - full * NR;
            nint panel = (nint)NR * kc;
            T* src = job.B + (nint)k0 * ldb + j0;
            for (int k = 0; k < kc; k++, src += ldb)
            {
                T* d = dst + (nint)k * NR;
                T* s = src;
                for (int p = 0; p < full; p++, s += NR, d += panel)
                    CopyRow(s, d, NR);
                if (rest > 0)
                {
                    int j = 0;
                    for (; j < rest; j++) d[j] = s[j];
                    for (; j < NR; j++) d[j] = T.Zero;
                }
            }
            return;
        }
        for (int jr = 0; jr < nc; jr += NR, dst += NR * kc)
        {
            // Stored [N,K]: op(B) column j is stored row j.
            PackTransposed(job.B + (nint)(j0 + jr) * ldb + k0, ldb, kc, Math.Min(NR, nc - jr), NR, dst);
        }
    }

    /// <summary>
    /// Transposing pack: <paramref name="rows"/> stored rows of <paramref name="kc"/> contiguous values become
    /// dst[k·width + j] (row j, depth k); rows from <paramref name="rows"/> to <paramref name="width"/> are zero.
    /// Done in register blocks — 8 rows × 8 k of floats (an 8×8 transpose in 24 in-lane shuffles), 4 rows × 8 k of
    /// floats, or 4 rows × 4 k of doubles — so every source row is read in whole vectors and every destination
    /// line is written whole: about five times cheaper than gathering one k of 8 rows at a time. That matters
    /// where the packed operand is used only M/MR times: dY·Wᵀ and the lm-head x·Wᵀ pack B for only 256 token
    /// rows (one FMA per packed element and core). Depth tails and leftover rows are copied with scalar stores.
    /// </summary>
    private static unsafe void PackTransposed<T>(T* src, nint ld, int kc, int rows, int width, T* dst) where T : unmanaged
    {
        int g = 0;
        if (Avx.IsSupported && typeof(T) == typeof(float))
        {
            int kv = kc & ~7;
            for (; g + 8 <= rows; g += 8)
            {
                float* s = (float*)src + g * ld;
                float* d = (float*)dst + g;
                for (int k = 0; k < kv; k += 8)
                {
                    // Each row is a short stream (kc values), too short for the hardware prefetcher to ramp up:
                    // request the next 8 rows' line at this depth one group ahead (prefetches never fault, so
                    // running past the last row is harmless).
                    if ((k & 15) == 0 && Sse.IsSupported)
                        for (int j = 8; j < 16; j++) Sse.Prefetch0(s + j * ld + k);
                    Transpose8x8(s + k, ld, d + (nint)k * width, width);
                }
                TailColumns(src + g * ld, ld, kv, kc, 8, width, dst + g);
            }
            if (g + 4 <= rows)
            {
                float* s = (float*)src + g * ld;
                float* d = (float*)dst + g;
                for (int k = 0; k < kv; k += 8)
                    Transpose4x8(s + k, ld, d + (nint)k * width, width);
                TailColumns(src + g * ld, ld, kv, kc, 4, width, dst + g);
                g += 4;
            }
        }
        else if (Avx.IsSupported && typeof(T) == typeof(double))
        {
            int kv = kc & ~3;
            for (; g + 4 <= rows; g += 4)
            {
                double* s = (double*)src + g * ld;
                double* d = (double*)dst + g;
                for (int k = 0; k < kv; k += 4)
                {
                    if ((k & 7) == 0 && Sse.IsSupported)
                        for (int j = 4; j < 8; j++) Sse.Prefetch0(s + j * ld + k);
                    Transpose4x4(s + k, ld, d + (nint)k * width, width);
                }
                TailColumns(src + g * ld, ld, kv, kc, 4, width, dst + g);
            }
        }
        // Leftover rows: read each row contiguously, write with stride width; then zero rows.
        TailColumns(src + g * ld, ld, 0, kc, rows - g, width, dst + g);
        for (int j = rows; j < width; j++)
        {
            T* d = dst + j;
            for (int k = 0; k < kc; k++, d += width) *d = default;
        }
    }

    /// <summary>dst[k·width + j] = src[j·ld + k] for j in [0, count), k in [k0, k1): scalar transposing copy.</summary>
    private static unsafe void TailColumns<T>(T* src, nint ld, int k0, int k1, int count, int width, T* dst) where T : unmanaged
    {
        for (int j = 0; j < count; j++, src += ld)
        {
            T* d = dst + j + (nint)k0 * width;
            for (int k = k0; k < k1; k++, d += width) *d = src[k];
        }
    }

    /// <summary>
    /// d[k·dstride + j] = s[j·ld + k] for j, k in 0..7. Stage 1 interleaves row pairs (unpacklo/hi), stage 2
    /// combines 64-bit pairs (shufps), stage 3 swaps 128-bit halves (vperm2f128).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Transpose8x8(float* s, nint ld, float* d, nint dstride)
    {
        var r0 = Avx.LoadVector256(s); var r1 = Avx.LoadVector256(s + ld);
        var r2 = Avx.LoadVector256(s + 2 * ld); var r3 = Avx.LoadVector256(s + 3 * ld);
        var r4 = Avx.LoadVector256(s + 4 * ld); var r5 = Avx.LoadVector256(s + 5 * ld);
        var r6 = Avx.LoadVector256(s + 6 * ld); var r7 = Avx.LoadVector256(s + 7 * ld);
        // t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5];  t1 = r0[2] r1[2] r0[3] r1[3] | r0[6] r1[6] r0[7] r1[7]
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        // s0 = column 0 of rows 0..3 | column 4 of rows 0..3, s1 = columns 1 | 5, s2 = 2 | 6, s3 = 3 | 7 (s4..s7: rows 4..7)
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44); var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44); var s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(d + dstride, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(d + 2 * dstride, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(d + 3 * dstride, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(d + 4 * dstride, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(d + 5 * dstride, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(d + 6 * dstride, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(d + 7 * dstride, Avx.Permute2x128(s3, s7, 0x31));
    }

    /// <summary>d[k·dstride + j] = s[j·ld + k] for j in 0..3, k in 0..7 (floats): the first two stages of the 8×8 transpose.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Transpose4x8(float* s, nint ld, float* d, nint dstride)
    {
        var r0 = Avx.LoadVector256(s); var r1 = Avx.LoadVector256(s + ld);
        var r2 = Avx.LoadVector256(s + 2 * ld); var r3 = Avx.LoadVector256(s + 3 * ld);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        // s0 = column 0 of rows 0..3 | column 4 of rows 0..3, etc.
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        Sse.Store(d, s0.GetLower()); Sse.Store(d + 4 * dstride, s0.GetUpper());
        Sse.Store(d + dstride, s1.GetLower()); Sse.Store(d + 5 * dstride, s1.GetUpper());
        Sse.Store(d + 2 * dstride, s2.GetLower()); Sse.Store(d + 6 * dstride, s2.GetUpper());
        Sse.Store(d + 3 * dstride, s3.GetLower()); Sse.Store(d + 7 * dstride, s3.GetUpper());
    }

    /// <summary>d[k·dstride + j] = s[j·ld + k] for j, k in 0..3 (doubles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Transpose4x4(double* s, nint ld, double* d, nint dstride)
    {
        var r0 = Avx.LoadVector256(s); var r1 = Avx.LoadVector256(s + ld);
        var r2 = Avx.LoadVector256(s + 2 * ld); var r3 = Avx.LoadVector256(s + 3 * ld);
        // t0 = r0[0] r1[0] | r0[2] r1[2];  t1 = r0[1] r1[1] | r0[3] r1[3]
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        Avx.Store(d, Avx.Permute2x128(t0, t2, 0x20));
        Avx.Store(d + dstride, Avx.Permute2x128(t1, t3, 0x20));
        Avx.Store(d + 2 * dstride, Avx.Permute2x128(t0, t2, 0x31));
        Avx.Store(d + 3 * dstride, Avx.Permute2x128(t1, t3, 0x31));
    }

    /// <summary>Copies 32, 48, 64 or 96 bytes with one or two vector moves (anything else: memcpy).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void CopySmall(byte* src, byte* dst, int bytes)
    {
        switch (bytes)
        {
            case 32: Vector256.Store(Vector256.Load(src), dst); break;
            case 48: Vector256.Store(Vector256.Load(src), dst); Vector128.Store(Vector128.Load(src + 32), dst + 32); break;
            case 64: Vector512.Store(Vector512.Load(src), dst); break;
            case 96: Vector512.Store(Vector512.Load(src), dst); Vector256.Store(Vector256.Load(src + 64), dst + 64); break;
            default: Buffer.MemoryCopy(src, dst, bytes, bytes); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void CopyRow<T>(T* src, T* dst, int count) where T : unmanaged
    {
        if (Vector512.IsHardwareAccelerated && count == 2 * Vector512<T>.Count)
        {
            Vector512.Store(Vector512.Load(src), dst);
            Vector512.Store(Vector512.Load(src + Vector512<T>.Count), dst + Vector512<T>.Count);
        }
        else
            Buffer.MemoryCopy(src, dst, (long)count * sizeof(T), (long)count * sizeof(T));
    }

    /// <summary>
    /// Runs the micro-kernel over an mc × nc block of C using packed Ap (mc × kc) and Bp (kc × nc).
    /// Full MR × NR tiles go straight to C. A last A micro-panel of at most 4 rows runs a 4-row kernel over the same
    /// zero-padded panel instead of a full MR-row tile; partial tiles
    /// are computed into a scratch tile and only the valid part is stored. Every kernel computes each element
    /// of C as the same sequential FMA chain over k, so the tile shape never changes a result.
    /// </summary>
    private static unsafe void MacroKernel<T>(int mc, int nc, int kc, T* ap, T* bp, T* c, int ldc, bool overwrite,
        GemmTriangle tri = GemmTriangle.None, int row0 = 0, int col0 = 0, int k0 = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int MR = Blocking<T>.MR, NR = Blocking<T>.NR;
        T* tile = stackalloc T[8 * 32];   // scratch for edge tiles; MR×NR ≤ 8×32 for both paths and types
        int kcFull = kc;
        for (int jr = 0; jr < nc; jr += NR)
        {
            int nr = Math.Min(NR, nc - jr);
            T* bPanel = bp + (nint)jr * kcFull;
            for (int ir = 0; ir < mc; ir += MR)
            {
                int mr = Math.Min(MR, mc - ir);
                T* aPanel = ap + (nint)ir * kcFull;
                T* cTile = c + (nint)ir * ldc + jr;
                T* bUse = bPanel;
                kc = kcFull;
                if (tri != GemmTriangle.None)
                {
                    // Absolute indices of the tile: rows i ∈ [ri, ri+mr), columns j ≥ cj, depth [k0, k0+kc).
                    int ri = row0 + ir, cj = col0 + jr;
                    if (tri == GemmTriangle.LowerC && cj > ri + mr - 1)
                        continue;   // every column of the tile is past every row: not wanted
                    if (tri == GemmTriangle.LowerA)
                        kc = Math.Clamp(ri + mr - k0, 0, kcFull);   // depths past the tile's last row are zeros
                    else if (tri == GemmTriangle.UpperA)
                    {
                        int skip = Math.Clamp(ri - k0, 0, kcFull);   // depths before the tile's first row are zeros
                        aPanel += (nint)skip * MR;
                        bUse += (nint)skip * NR;
                        kc = kcFull - skip;
                    }
                }
                if (mr == MR && nr == NR)
                {
                    MicroKernel(kc, aPanel, bUse, cTile, ldc, overwrite);
                    continue;
                }
                // Rows the chosen kernel computes: 4 or MR.
                int rows = Vector512.IsHardwareAccelerated && mr <= 4 ? 4 : MR;
                bool direct = mr == rows && nr == NR;
                T* dst0 = direct ? cTile : tile;
                int ld0 = direct ? ldc : NR;
                bool ow = direct ? overwrite : true;
                if (rows == 4) Kernel4x2V512(kc, aPanel, MR, bUse, dst0, ld0, ow);
                else MicroKernel(kc, aPanel, bUse, dst0, ld0, ow);
                if (direct)
                    continue;
                for (int r = 0; r < mr; r++)
                {
                    T* dst = cTile + (nint)r * ldc;
                    T* src = tile + r * NR;
                    if (overwrite)
                        for (int j = 0; j < nr; j++) dst[j] = src[j];
                    else
                        for (int j = 0; j < nr; j++) dst[j] += src[j];
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void MicroKernel<T>(int kc, T* a, T* b, T* c, int ldc, bool overwrite)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (Vector512.IsHardwareAccelerated)
            Kernel8x2V512(kc, a, 8, b, c, ldc, overwrite);
        else
            Kernel6x2V256(kc, a, b, c, ldc, overwrite);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Fma<T>(Vector512<T> a, Vector512<T> b, Vector512<T> c) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return Vector512.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector512.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        return a * b + c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<T> Fma<T>(Vector256<T> a, Vector256<T> b, Vector256<T> c) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
            return Vector256.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector256.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        return a * b + c;
    }

    /// <summary>
    /// Requests the C tile's cache lines before the k loop, so the final load/store of C (often a miss
    /// when C is large) overlaps with the FMAs instead of stalling after them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PrefetchTile<T>(T* c, int ldc, int rows, int cols) where T : unmanaged
    {
        if (!Sse.IsSupported)
            return;
        for (int r = 0; r < rows; r++, c += ldc)
        {
            Sse.Prefetch0(c);
            Sse.Prefetch0(c + cols - 1);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Put<T>(Vector512<T> v, T* c, bool overwrite) where T : unmanaged
    {
        if (!overwrite) v += Vector512.Load(c);
        Vector512.Store(v, c);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Put<T>(Vector256<T> v, T* c, bool overwrite) where T : unmanaged
    {
        if (!overwrite) v += Vector256.Load(c);
        Vector256.Store(v, c);
    }

    /// <summary>
    /// AVX-512 micro-kernel: an 8 × (2·W) tile of C (W = 16 floats or 8 doubles) held in 16 registers.
    /// Per depth step: load two vectors of the B micro-panel, broadcast each of the 8 A values, 16 FMAs.
    /// Each C element is the sequential FMA chain over k = 0..kc-1, then added to C once. A micro-panels are
    /// read with row stride <paramref name="aStride"/> (= MR). Measured on Zen 4: 99 % of the FMA peak with A
    /// and B panels in L2; a 12 × 2 tile (24 accumulators) measured the same in isolation and 1–3 % slower in
    /// the blocked product, so the tile stays at 8 × 2 (also a divisor of the 256-token rows).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel8x2V512<T>(int kc, T* a, int aStride, T* b, T* c, int ldc, bool overwrite)
        where T : unmanaged
    {
        int W = Vector512<T>.Count;
        nint step = aStride;
        PrefetchTile(c, ldc, 8, 2 * W);
        Vector512<T> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<T> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<T> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<T> c60 = default, c61 = default, c70 = default, c71 = default;
        for (int k = 0; k < kc; k++, a += step, b += 2 * W)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + W);
            var x = Vector512.Create(a[0]); c00 = Fma(x, b0, c00); c01 = Fma(x, b1, c01);
            x = Vector512.Create(a[1]); c10 = Fma(x, b0, c10); c11 = Fma(x, b1, c11);
            x = Vector512.Create(a[2]); c20 = Fma(x, b0, c20); c21 = Fma(x, b1, c21);
            x = Vector512.Create(a[3]); c30 = Fma(x, b0, c30); c31 = Fma(x, b1, c31);
            x = Vector512.Create(a[4]); c40 = Fma(x, b0, c40); c41 = Fma(x, b1, c41);
            x = Vector512.Create(a[5]); c50 = Fma(x, b0, c50); c51 = Fma(x, b1, c51);
            x = Vector512.Create(a[6]); c60 = Fma(x, b0, c60); c61 = Fma(x, b1, c61);
            x = Vector512.Create(a[7]); c70 = Fma(x, b0, c70); c71 = Fma(x, b1, c71);
        }
        nint ld = ldc;
        Put(c00, c, overwrite); Put(c01, c + W, overwrite); c += ld;
        Put(c10, c, overwrite); Put(c11, c + W, overwrite); c += ld;
        Put(c20, c, overwrite); Put(c21, c + W, overwrite); c += ld;
        Put(c30, c, overwrite); Put(c31, c + W, overwrite); c += ld;
        Put(c40, c, overwrite); Put(c41, c + W, overwrite); c += ld;
        Put(c50, c, overwrite); Put(c51, c + W, overwrite); c += ld;
        Put(c60, c, overwrite); Put(c61, c + W, overwrite); c += ld;
        Put(c70, c, overwrite); Put(c71, c + W, overwrite);
    }

    /// <summary>4-row AVX-512 kernel over the first 4 rows of an A micro-panel (edge panels of 1..4 rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel4x2V512<T>(int kc, T* a, int aStride, T* b, T* c, int ldc, bool overwrite)
        where T : unmanaged
    {
        int W = Vector512<T>.Count;
        nint step = aStride;
        PrefetchTile(c, ldc, 4, 2 * W);
        Vector512<T> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<T> c20 = default, c21 = default, c30 = default, c31 = default;
        for (int k = 0; k < kc; k++, a += step, b += 2 * W)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + W);
            var x = Vector512.Create(a[0]); c00 = Fma(x, b0, c00); c01 = Fma(x, b1, c01);
            x = Vector512.Create(a[1]); c10 = Fma(x, b0, c10); c11 = Fma(x, b1, c11);
            x = Vector512.Create(a[2]); c20 = Fma(x, b0, c20); c21 = Fma(x, b1, c21);
            x = Vector512.Create(a[3]); c30 = Fma(x, b0, c30); c31 = Fma(x, b1, c31);
        }
        nint ld = ldc;
        Put(c00, c, overwrite); Put(c01, c + W, overwrite); c += ld;
        Put(c10, c, overwrite); Put(c11, c + W, overwrite); c += ld;
        Put(c20, c, overwrite); Put(c21, c + W, overwrite); c += ld;
        Put(c30, c, overwrite); Put(c31, c + W, overwrite);
    }

    /// <summary>AVX2 fallback micro-kernel: a 6 × (2·W) tile (W = 8 floats or 4 doubles), 12 accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Kernel6x2V256<T>(int kc, T* a, T* b, T* c, int ldc, bool overwrite)
        where T : unmanaged
    {
        int W = Vector256<T>.Count;
        PrefetchTile(c, ldc, 6, 2 * W);
        Vector256<T> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<T> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector256<T> c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++, a += 6, b += 2 * W)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + W);
            var x = Vector256.Create(a[0]); c00 = Fma(x, b0, c00); c01 = Fma(x, b1, c01);
            x = Vector256.Create(a[1]); c10 = Fma(x, b0, c10); c11 = Fma(x, b1, c11);
            x = Vector256.Create(a[2]); c20 = Fma(x, b0, c20); c21 = Fma(x, b1, c21);
            x = Vector256.Create(a[3]); c30 = Fma(x, b0, c30); c31 = Fma(x, b1, c31);
            x = Vector256.Create(a[4]); c40 = Fma(x, b0, c40); c41 = Fma(x, b1, c41);
            x = Vector256.Create(a[5]); c50 = Fma(x, b0, c50); c51 = Fma(x, b1, c51);
        }
        nint ld = ldc;
        Put(c00, c, overwrite); Put(c01, c + W, overwrite); c += ld;
        Put(c10, c, overwrite); Put(c11, c + W, overwrite); c += ld;
        Put(c20, c, overwrite); Put(c21, c + W, overwrite); c += ld;
        Put(c30, c, overwrite); Put(c31, c + W, overwrite); c += ld;
        Put(c40, c, overwrite); Put(c41, c + W, overwrite); c += ld;
        Put(c50, c, overwrite); Put(c51, c + W, overwrite);
    }

    // ------------------------------------------------------------------------------------------
    // Direct path (small problems, few rows)
    // ------------------------------------------------------------------------------------------

    /// <summary>
    /// Unpacked product for columns [j0,j1) of C. Each row of op(A) is made contiguous first (copied
    /// when transA). Without transB, C columns are computed in register chunks as sums over k of
    /// a(i,k)·B[k, j..]; with transB each element is a dot product of two contiguous rows.
    /// </summary>
    private static unsafe void Direct<T>(in Job<T> job, int j0, int j1)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int M = job.M, K = job.K;
        nint lda = job.Lda, ldb = job.Ldb, ldc = job.Ldc;
        T* rowBuf = job.TransA ? Buffers<T>.Row(K) : null;
        for (int i = 0; i < M; i++)
        {
            T* arow;
            if (job.TransA)
            {
                T* s = job.A + i;
                for (int k = 0; k < K; k++, s += lda) rowBuf[k] = *s;
                arow = rowBuf;
            }
            else
                arow = job.A + i * lda;
            T* crow = job.C + i * ldc;
            if (job.TransB)
                DirectDots(arow, job.B, ldb, K, crow, j0, j1, job.Accumulate);
            else
                DirectAxpy(arow, job.B, ldb, K, crow, j0, j1, job.Accumulate);
        }
    }

    /// <summary>
    /// crow[j0..j1) (+)= Σ_k arow[k]·B[k, j]. Columns are processed in blocks of 16 KiB whose partial sums
    /// live in an L1-resident scratch row, while each B row segment is streamed contiguously (this is
    /// memory-bound for M=1, so sequential access to B is what matters). Per element the sum is the
    /// sequential FMA chain over k from zero, added to C at the end.
    /// </summary>
    private static unsafe void DirectAxpy<T>(T* arow, T* B, nint ldb, int K, T* crow, int j0, int j1, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int Block = 16384 / sizeof(T);   // 16 KiB of partial sums: L1-resident, and long contiguous runs of B
        int W = Vector256<T>.Count;
        T* acc = stackalloc T[Block];
        for (int jb = j0; jb < j1; jb += Block)
        {
            int bw = Math.Min(Block, j1 - jb);
            int vw = bw - bw % W;
            new Span<T>(acc, bw).Clear();
            T* bp = B + jb;
            for (int k = 0; k < K; k++, bp += ldb)
            {
                T a = arow[k];
                var x = Vector256.Create(a);
                int j = 0;
                for (; j < vw; j += W)
                    Vector256.Store(Fma(x, Vector256.Load(bp + j), Vector256.Load(acc + j)), acc + j);
                for (; j < bw; j++)
                    acc[j] = T.FusedMultiplyAdd(a, bp[j], acc[j]);
            }
            T* c = crow + jb;
            if (accumulate)
                for (int j = 0; j < bw; j++) c[j] += acc[j];
            else
                new Span<T>(acc, bw).CopyTo(new Span<T>(c, bw));
        }
    }

    private static unsafe void DirectDots<T>(T* arow, T* B, nint ldb, int K, T* crow, int j0, int j1, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int W = Vector256<T>.Count;
        for (int j = j0; j < j1; j++)
        {
            T* brow = B + j * ldb;
            Vector256<T> s0 = default, s1 = default;
            int k = 0;
            for (; k + 2 * W <= K; k += 2 * W)
            {
                s0 = Fma(Vector256.Load(arow + k), Vector256.Load(brow + k), s0);
                s1 = Fma(Vector256.Load(arow + k + W), Vector256.Load(brow + k + W), s1);
            }
            for (; k + W <= K; k += W)
                s0 = Fma(Vector256.Load(arow + k), Vector256.Load(brow + k), s0);
            T s = Vector256.Sum(s0 + s1);
            for (; k < K; k++)
                s = T.FusedMultiplyAdd(arow[k], brow[k], s);
            crow[j] = accumulate ? crow[j] + s : s;
        }
    }
}
