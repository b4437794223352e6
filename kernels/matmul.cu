// matmul.cu: C (+)= op(A)·op(B) with float32 arithmetic (tiled through shared memory), bias add and column sums (for
// db, in two stages), the gauge-fixed projection's gathers and identity blocks, and a bf16 tensor-core path
// (mma.sync m16n8k16, float32 accumulation) for sm_80 and newer. The op kernels use storage stor_t (float32, or bf16 with -DMT_BF16: names
// _bf16, see common.cuh); the conversions and the tensor-core kernel are storage-independent and in the float32 build.
#include "common.cuh"

// ---------------------------------------------------------------- float32 SGEMM
// op(A) is M×K: A(i,k) = transA ? A[k·lda + i] : A[i·lda + k];  op(B) is K×N: B(k,j) = transB ? B[j·ldb + k] : B[k·ldb + j].
// C[i·ldc + j] = (accumulate ? C : 0) + Σ_k A(i,k)·B(k,j). Block: 256 threads, a 64×64 tile of C, 4×4 per thread;
// K in steps of 16 through shared memory. Any M, N, K (edges zero-filled).
//
// The mapped variant (the gauge-fixed projection's gathers and scatters) relabels logical indices to physical ones
// through optional int tables, applied wherever that index appears: i → mapM[i] (rows of op(A) and of C),
// k → mapK[k] (columns of op(A), rows of op(B)), j → mapN[j] (columns of op(B) and of C); a null table is the identity.
// So with mapK, A(i,k) = A[i·lda + mapK[k]] and B(k,j) = B[mapK[k]·ldb + j] (a gather-GEMM over a subset of rows of W);
// with mapM (transA), C[mapM[i]·ldc + j] (a scatter into rows); with mapN (transB), C[i·ldc + mapN[j]].
// The tables must be injective (distinct physical indices), so no two threads of one launch write the same element.
#define SG_BM 64
#define SG_BN 64
#define SG_BK 16

template <bool MAPPED>
__device__ __forceinline__ void sgemm_body(stor_t* __restrict__ Cm, const stor_t* __restrict__ A,
    const stor_t* __restrict__ Bm, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int accumulate,
    const int* __restrict__ mapM, const int* __restrict__ mapK, const int* __restrict__ mapN)
{
    __shared__ float As[SG_BK][SG_BM + 4];
    __shared__ float Bs[SG_BK][SG_BN + 4];
    int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    int i0 = blockIdx.y * SG_BM, j0 = blockIdx.x * SG_BN;
    float acc[4][4];
    #pragma unroll
    for (int a = 0; a < 4; a++)
        #pragma unroll
        for (int b = 0; b < 4; b++) acc[a][b] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += SG_BK)
    {
        // 1024 elements of each tile, 4 per thread. Index so that consecutive threads read consecutive addresses.
        #pragma unroll
        for (int r = 0; r < 4; r++)
        {
            int e = tid + r * 256;
            int ii, kk;
            if (transA) { kk = e / SG_BM; ii = e % SG_BM; } else { ii = e / SG_BK; kk = e % SG_BK; }
            int gi = i0 + ii, gk = k0 + kk;
            float va = 0.0f;
            if (gi < M && gk < K)
            {
                long long pi = gi, pk = gk;   // physical row / column of op(A)
                if (MAPPED) { if (mapM) pi = mapM[gi]; if (mapK) pk = mapK[gk]; }
                va = ld(transA ? A + pk * lda + pi : A + pi * lda + pk);
            }
            As[kk][ii] = va;
            int jj;
            if (transB) { jj = e / SG_BK; kk = e % SG_BK; } else { kk = e / SG_BN; jj = e % SG_BN; }
            int gj = j0 + jj; gk = k0 + kk;
            float vb = 0.0f;
            if (gj < N && gk < K)
            {
                long long pk = gk, pj = gj;   // physical row / column of op(B)
                if (MAPPED) { if (mapK) pk = mapK[gk]; if (mapN) pj = mapN[gj]; }
                vb = ld(transB ? Bm + pj * ldb + pk : Bm + pk * ldb + pj);
            }
            Bs[kk][jj] = vb;
        }
        __syncthreads();
        #pragma unroll
        for (int kk = 0; kk < SG_BK; kk++)
        {
            float a[4], b[4];
            #pragma unroll
            for (int r = 0; r < 4; r++) { a[r] = As[kk][ty + 16 * r]; b[r] = Bs[kk][tx + 16 * r]; }
            #pragma unroll
            for (int r = 0; r < 4; r++)
                #pragma unroll
                for (int c = 0; c < 4; c++) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
        }
        __syncthreads();
    }
    #pragma unroll
    for (int r = 0; r < 4; r++)
        #pragma unroll
        for (int c = 0; c < 4; c++)
        {
            int gi = i0 + ty + 16 * r, gj = j0 + tx + 16 * c;
            if (gi < M && gj < N)
            {
                long long pi = gi, pj = gj;   // physical row / column of C
                if (MAPPED) { if (mapM) pi = mapM[gi]; if (mapN) pj = mapN[gj]; }
                long long o = pi * ldc + pj;
                st(Cm + o, accumulate ? ld(Cm + o) + acc[r][c] : acc[r][c]);
            }
        }
}

extern "C" __global__ void __launch_bounds__(256) KNAME(sgemm_f32)(stor_t* __restrict__ Cm, const stor_t* __restrict__ A,
    const stor_t* __restrict__ Bm, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int accumulate)
{
    sgemm_body<false>(Cm, A, Bm, M, N, K, lda, ldb, ldc, transA, transB, accumulate, 0, 0, 0);
}

extern "C" __global__ void __launch_bounds__(256) KNAME(sgemm_f32_mapped)(stor_t* __restrict__ Cm, const stor_t* __restrict__ A,
    const stor_t* __restrict__ Bm, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int accumulate,
    const int* __restrict__ mapM, const int* __restrict__ mapK, const int* __restrict__ mapN)
{
    sgemm_body<true>(Cm, A, Bm, M, N, K, lda, ldb, ldc, transA, transB, accumulate, mapM, mapK, mapN);
}

// y[n, :] += b for n < N (row width M).
extern "C" __global__ void KNAME(bias_add)(stor_t* __restrict__ y, const stor_t* __restrict__ b, int N, int M)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)N * M) add_to(y + i, ld(b + i % M));
}

// y[n·ld + col0 + j] += b[j] for n < N, j < M: a row vector (float32) into a column block of a wider matrix.
extern "C" __global__ void KNAME(add_to_columns)(stor_t* __restrict__ y, const float* __restrict__ b, int N, int M, int ld, int col0)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * M) return;
    long long n = i / M;
    int j = (int)(i % M);
    add_to(y + n * ld + col0 + j, b[j]);
}

// Column sums of a (row stride lda, M columns), stage 1: partial[p·M + j] = Σ a[n·lda + j] over chunk p's rows (see
// common.cuh). Grid (⌈M / blockDim.x⌉, ⌈N / COL_ROWS⌉). lda > M reads a column block, e.g. the Q part of dqkv [N, 3C].
extern "C" __global__ void KNAME(column_partials)(float* __restrict__ partial, const stor_t* __restrict__ a, int N, int M, int lda)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x, p = blockIdx.y;
    if (j >= M) return;
    int n1 = min(N, (p + 1) * COL_ROWS);
    float s = 0.0f;
    for (int n = p * COL_ROWS; n < n1; n++) s += ld(a + (long long)n * lda + j);
    partial[(long long)p * M + j] = s;
}

// Stage 2 of every column reduction: acc[j] += Σ_p partial[p·M + j] over the P chunks, in order.
extern "C" __global__ void KNAME(column_partials_add)(stor_t* __restrict__ acc, const float* __restrict__ partial, int P, int M)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= M) return;
    float s = 0.0f;
    for (int p = 0; p < P; p++) s += partial[(long long)p * M + j];
    add_to(acc + j, s);
}

// ---------------------------------------------------------------- gauge-fixed QKV projection (identity blocks skipped)
// W_qkv is GPT-2's Conv1D layout [C, 3C]; qkv rows are [q | k | v], heads contiguous (head h: columns h·dh … h·dh+dh−1).
// Per head, W_Q^h has the identity at its pivot rows P_h: q_h = x[:, P_h] + x[:, R_h]·W_Q^h[R_h, :] + b_Q^h, likewise
// v_h (b_V = 0). The x[:, R_h]·W′ products are sgemm_f32_mapped launches (mapK = R_h, or mapM / mapN in backward);
// these two kernels add the identity blocks' part. Output columns of Q and V are numbered k ∈ [0, 2C): k < C is qkv
// column k (Q), k ≥ C is qkv column k + C (V); pcol[k] is the x column that feeds output k through the identity
// (pcol[k] = P_{s,h}[j] with s = 0 for Q / 1 for V, h = (k mod C) / dh, j = k mod dh).

// y[n, col(k)] += x[n, pcol[k]] (+ b_Q[k] for k < C). One thread per (n, k).
extern "C" __global__ void KNAME(fixed_qkv_pivot_fwd)(stor_t* __restrict__ y, const stor_t* __restrict__ x, const stor_t* __restrict__ bq,
    const int* __restrict__ pcol, int N, int C)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * 2 * C) return;
    int k = (int)(i % (2 * C));
    long long n = i / (2 * C);
    int col = k < C ? k : k + C;
    float v = ld(x + n * C + pcol[k]);
    if (k < C) v += ld(bq + k);
    add_to(y + n * 3 * C + col, v);
}

// dx[n, c] += Σ_{k : pcol[k] = c} dy[n, col(k)]: the identity blocks' transpose. The outputs fed by x column c are
// listed in CSR form (invCols[invStart[c] … invStart[c+1]−1], ascending k), so each dx element has one writer and a
// fixed summation order. One thread per (n, c).
extern "C" __global__ void KNAME(fixed_qkv_pivot_bwd)(stor_t* __restrict__ dx, const stor_t* __restrict__ dy,
    const int* __restrict__ invStart, const int* __restrict__ invCols, int N, int C)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C) return;
    int c = (int)(i % C);
    long long n = i / C;
    int e0 = invStart[c], e1 = invStart[c + 1];
    if (e0 == e1) return;
    const stor_t* row = dy + n * 3 * C;
    float s = 0.0f;
    for (int e = e0; e < e1; e++) { int k = invCols[e]; s += ld(row + (k < C ? k : k + C)); }
    add_to(dx + i, s);
}

// ---------------------------------------------------------------- bf16 tensor-core tiles (both builds)
// Tiles 128×128×32 in shared memory as [row][k] with k contiguous (padded rows), 256 threads = 8 warps as 2×4, each
// warp 64×32 of C = 4×4 mma tiles of 16×8 (m16n8k16: A fragment rows g, g+8 × k pairs 2·t4, 2·t4+8; B fragment k pairs
// 2·t4, 2·t4+8 × column g; C rows g, g+8 × columns 2·t4, 2·t4+1; g = lane / 4, t4 = lane mod 4).
#define MM_BM 128
#define MM_BN 128
#define MM_BK 32
#define MM_LD (MM_BK + 8)   /* padded row (bf16 elements): 80 bytes, so fragment loads spread over the banks */

/// A warp's 64×32 float32 accumulator (4×4 mma tiles of 4 values) set to 0.
__device__ __forceinline__ void zero_acc(float (&acc)[4][4][4])
{
    #pragma unroll
    for (int a = 0; a < 4; a++)
        #pragma unroll
        for (int b = 0; b < 4; b++)
            #pragma unroll
            for (int c = 0; c < 4; c++) acc[a][b][c] = 0.0f;
}

/// One MM_BK-deep step of a warp's 64×32 tile of C from the shared tiles as[row][k] (rows wm·64…) and bs[col][k]
/// (columns wn·32…): the fragments of the layout above, then 4×4 mma.sync m16n8k16 into acc.
__device__ __forceinline__ void warp_tile_mma(float (*acc)[4][4], const bf16* as, const bf16* bs, int wm, int wn, int g, int t4)
{
    #pragma unroll
    for (int kk = 0; kk < MM_BK; kk += 16)
    {
        unsigned int af[4][4], bfr[4][2];
        #pragma unroll
        for (int mi = 0; mi < 4; mi++)
        {
            int r = wm * 64 + mi * 16 + g;
            af[mi][0] = *(const unsigned int*)(&as[r * MM_LD + kk + 2 * t4]);
            af[mi][1] = *(const unsigned int*)(&as[(r + 8) * MM_LD + kk + 2 * t4]);
            af[mi][2] = *(const unsigned int*)(&as[r * MM_LD + kk + 2 * t4 + 8]);
            af[mi][3] = *(const unsigned int*)(&as[(r + 8) * MM_LD + kk + 2 * t4 + 8]);
        }
        #pragma unroll
        for (int ni = 0; ni < 4; ni++)
        {
            int c = wn * 32 + ni * 8 + g;
            bfr[ni][0] = *(const unsigned int*)(&bs[c * MM_LD + kk + 2 * t4]);
            bfr[ni][1] = *(const unsigned int*)(&bs[c * MM_LD + kk + 2 * t4 + 8]);
        }
        #pragma unroll
        for (int mi = 0; mi < 4; mi++)
            #pragma unroll
            for (int ni = 0; ni < 4; ni++) mma_bf16_16816(acc[mi][ni], af[mi], bfr[ni]);
    }
}

#ifndef MT_BF16   // storage-independent kernels: compiled once, in the float32 build
// ---------------------------------------------------------------- conversions
extern "C" __global__ void f32_to_bf16_kernel(bf16* __restrict__ out, const float* __restrict__ in, long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = f32_to_bf16(in[i]);
}

extern "C" __global__ void bf16_to_f32_kernel(float* __restrict__ out, const bf16* __restrict__ in, long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = bf16_to_f32(in[i]);
}

// ---------------------------------------------------------------- bf16 tensor cores (sm_80+)
// C[M,N] (float32) = A[M,K]·Bᵀ with A row-major [M,K] and B row-major [N,K] (a Linear weight: y = x·Wᵀ), bf16
// operands, float32 accumulation, optional float32 bias[N]. Tiles 128×128×32, 256 threads (8 warps as 2×4, each
// 64×32 = 4×4 mma tiles of 16×8). Requires M % 128 == 0, N % 128 == 0, K % 32 == 0 (the host checks).
// Two shared-memory stages: the next tile's global loads are issued before this tile's mma.
extern "C" __global__ void __launch_bounds__(256) gemm_bf16_tc(float* __restrict__ Cm, const bf16* __restrict__ A,
    const bf16* __restrict__ Bm, const float* __restrict__ bias, int M, int N, int K)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    __shared__ __align__(16) bf16 As[2][MM_BM * MM_LD];
    __shared__ __align__(16) bf16 Bs[2][MM_BN * MM_LD];
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int wm = warp >> 2, wn = warp & 3;             // warp tile origin: rows wm·64, cols wn·32
    int g = lane >> 2, t4 = lane & 3;
    long long i0 = (long long)blockIdx.y * MM_BM, j0 = (long long)blockIdx.x * MM_BN;
    const bf16* Ab = A + i0 * K;
    const bf16* Bb = Bm + j0 * K;

    // Each tile is 128 rows × 32 bf16 = 128 × 4 uint4; 256 threads load 2 uint4 each for A and for B.
    int lr0 = tid >> 2, lc = (tid & 3) * 8, lr1 = lr0 + 64;
    uint4 ra0, ra1, rb0, rb1;
    ra0 = *(const uint4*)(Ab + (long long)lr0 * K + lc);
    ra1 = *(const uint4*)(Ab + (long long)lr1 * K + lc);
    rb0 = *(const uint4*)(Bb + (long long)lr0 * K + lc);
    rb1 = *(const uint4*)(Bb + (long long)lr1 * K + lc);

    float acc[4][4][4];
    zero_acc(acc);

    int stage = 0;
    for (int k0 = 0; k0 < K; k0 += MM_BK)
    {
        *(uint4*)(&As[stage][lr0 * MM_LD + lc]) = ra0;
        *(uint4*)(&As[stage][lr1 * MM_LD + lc]) = ra1;
        *(uint4*)(&Bs[stage][lr0 * MM_LD + lc]) = rb0;
        *(uint4*)(&Bs[stage][lr1 * MM_LD + lc]) = rb1;
        __syncthreads();
        if (k0 + MM_BK < K)
        {
            int kn = k0 + MM_BK;
            ra0 = *(const uint4*)(Ab + (long long)lr0 * K + kn + lc);
            ra1 = *(const uint4*)(Ab + (long long)lr1 * K + kn + lc);
            rb0 = *(const uint4*)(Bb + (long long)lr0 * K + kn + lc);
            rb1 = *(const uint4*)(Bb + (long long)lr1 * K + kn + lc);
        }
        const bf16* as = As[stage];
        const bf16* bs = Bs[stage];
        warp_tile_mma(acc, as, bs, wm, wn, g, t4);
        stage ^= 1;
    }
    #pragma unroll
    for (int mi = 0; mi < 4; mi++)
        #pragma unroll
        for (int ni = 0; ni < 4; ni++)
        {
            long long r = i0 + wm * 64 + mi * 16 + g;
            long long c = j0 + wn * 32 + ni * 8 + 2 * t4;
            float b0 = bias ? bias[c] : 0.0f, b1 = bias ? bias[c + 1] : 0.0f;
            Cm[r * N + c] = acc[mi][ni][0] + b0;
            Cm[r * N + c + 1] = acc[mi][ni][1] + b1;
            Cm[(r + 8) * N + c] = acc[mi][ni][2] + b0;
            Cm[(r + 8) * N + c + 1] = acc[mi][ni][3] + b1;
        }
#endif
}
#endif   // !MT_BF16

#ifdef MT_BF16
// ---------------------------------------------------------------- bf16-storage GEMM on tensor cores (sm_80+)
// One MM_BM × MM_BK tile of an operand, moved in two steps so that the global loads of the next tile overlap the
// tensor-core work on this one: fetch_tile_bf16 (global → 2 registers of 8 bf16 per thread), store_tile_bf16 (→ shared
// memory as S[r][k], k contiguous, padded rows of MM_LD). Element (r, k) of the tile — global row r0 + r of op(X)'s outer
// dimension, global k0 + k — lies at X[row·ld + k] (kContig) or X[k·ld + row] (the transposed storage). Out-of-range
// rows (≥ R) and k (≥ K) read as 0, so any M, N, K works. Each thread moves 2 groups of 8 elements consecutive in
// memory: with `vec` (ld a multiple of 8, X 16-byte aligned) and the group in range, one 16-byte load; else 8
// predicated loads. Consecutive threads read consecutive addresses.
__device__ __forceinline__ void tile_group(int g, bool kContig, int& r, int& k)
{
    if (kContig) { r = g >> 2; k = (g & 3) * 8; }        // 4 groups of 8 k per row
    else { r = (g & 15) * 8; k = g >> 4; }               // 16 groups of 8 rows per k
}

__device__ __forceinline__ void fetch_tile_bf16(uint4* v, const bf16* X, long long ld, bool kContig, bool vec,
    long long r0, int R, int k0, int K, int tid)
{
    #pragma unroll
    for (int h = 0; h < 2; h++)
    {
        int r, k;
        tile_group(tid + h * 256, kContig, r, k);
        long long row = r0 + r;
        int kk = k0 + k;
        union { uint4 u; bf16 e[8]; } t;
        if (kContig ? vec && row < R && kk + 8 <= K : vec && kk < K && row + 8 <= R)
            t.u = *(const uint4*)(kContig ? X + row * ld + kk : X + (long long)kk * ld + row);
        else
            for (int i = 0; i < 8; i++)
                t.e[i] = kContig ? (row < R && kk + i < K ? X[row * ld + kk + i] : (bf16)0)
                                 : (kk < K && row + i < R ? X[(long long)kk * ld + row + i] : (bf16)0);
        v[h] = t.u;
    }
}

__device__ __forceinline__ void store_tile_bf16(bf16* S, const uint4* v, bool kContig, int tid)
{
    #pragma unroll
    for (int h = 0; h < 2; h++)
    {
        int r, k;
        tile_group(tid + h * 256, kContig, r, k);
        if (kContig) *(uint4*)(S + r * MM_LD + k) = v[h];   // 16-byte aligned: MM_LD·2 = 80 bytes a row, k a multiple of 8
        else
        {
            union { uint4 u; bf16 e[8]; } t;
            t.u = v[h];
            for (int i = 0; i < 8; i++) S[(r + i) * MM_LD + k] = t.e[i];
        }
    }
}

// C[M,N] (+)= op(A)·op(B) with sgemm's conventions (op(A)(i,k) = transA ? A[k·lda + i] : A[i·lda + k], op(B)(k,j) =
// transB ? B[j·ldb + k] : B[k·ldb + j]), bf16 in and out, float32 accumulation (mma.sync m16n8k16), the accumulate
// read-modify-write in float32 before one rounding. Any M, N, K > 0 (edge tiles are zero-filled, their stores
// predicated); grid (⌈N / 128⌉, ⌈M / 128⌉), 256 threads. Two shared-memory stages: tile k+1 is fetched into registers
// while the tensor cores work on tile k, so one barrier per tile suffices (a warp writing stage s again has passed the
// barrier that every warp reached only after its mma on s). The host uses it for every bf16 GEMM on an sm_80+ device.
extern "C" __global__ void __launch_bounds__(256) gemm_tc_bf16(bf16* __restrict__ Cm, const bf16* __restrict__ A,
    const bf16* __restrict__ Bm, int M, int N, int K, int lda, int ldb, int ldc, int transA, int transB, int accumulate)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    __shared__ __align__(16) bf16 As[2][MM_BM * MM_LD];
    __shared__ __align__(16) bf16 Bs[2][MM_BN * MM_LD];
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int wm = warp >> 2, wn = warp & 3;             // warp tile origin: rows wm·64, cols wn·32
    int g = lane >> 2, t4 = lane & 3;
    long long i0 = (long long)blockIdx.y * MM_BM, j0 = (long long)blockIdx.x * MM_BN;
    bool aK = !transA, bK = transB != 0;           // which operands are stored with k contiguous
    bool vecA = (lda & 7) == 0 && ((unsigned long long)A & 15) == 0;
    bool vecB = (ldb & 7) == 0 && ((unsigned long long)Bm & 15) == 0;

    float acc[4][4][4];
    zero_acc(acc);

    uint4 ra[2], rb[2];
    fetch_tile_bf16(ra, A, lda, aK, vecA, i0, M, 0, K, tid);
    fetch_tile_bf16(rb, Bm, ldb, bK, vecB, j0, N, 0, K, tid);
    int stage = 0;
    for (int k0 = 0; k0 < K; k0 += MM_BK)
    {
        store_tile_bf16(As[stage], ra, aK, tid);
        store_tile_bf16(Bs[stage], rb, bK, tid);
        __syncthreads();   // stage written: every warp may read it
        if (k0 + MM_BK < K)
        {
            fetch_tile_bf16(ra, A, lda, aK, vecA, i0, M, k0 + MM_BK, K, tid);
            fetch_tile_bf16(rb, Bm, ldb, bK, vecB, j0, N, k0 + MM_BK, K, tid);
        }
        warp_tile_mma(acc, As[stage], Bs[stage], wm, wn, g, t4);
        stage ^= 1;
    }
    #pragma unroll
    for (int mi = 0; mi < 4; mi++)
        #pragma unroll
        for (int ni = 0; ni < 4; ni++)
        {
            long long r = i0 + wm * 64 + mi * 16 + g;
            long long c = j0 + wn * 32 + ni * 8 + 2 * t4;
            #pragma unroll
            for (int h = 0; h < 4; h++)   // h: (row r, col c), (r, c+1), (r+8, c), (r+8, c+1)
            {
                long long rr = r + (h >> 1) * 8, cc = c + (h & 1);
                if (rr >= M || cc >= N) continue;
                long long o = rr * ldc + cc;
                float v = acc[mi][ni][h];
                if (accumulate) v += bf16_to_f32(Cm[o]);
                Cm[o] = f32_to_bf16(v);
            }
        }
#endif
}
#endif   // MT_BF16
