// attention.cu: multi-head attention over packed qkv [B,T,3C] (q | k | v; head h at columns h·hs..h·hs+hs−1 of each).
// Flash-style both ways, no T×T matrix in global memory: query and key tiles of BT rows go through shared memory.
// Forward: one block per query tile runs an online softmax over the key tiles and saves lse[B,NH,T]; when att is not
// null it also writes the pattern [B,NH,T,T] (the op set's analysis surface; training skips it).
// Backward is FlashAttention-2's: it recomputes P = exp(s·scale − lse) tile by tile from q, k and the saved lse, and
// needs D = rowsum(dy ∘ y) (a pre-kernel) for the softmax backward. It is deterministic (no atomics): one block per key
// tile accumulates dK and dV over the query tiles, one block per query tile accumulates dQ over the key tiles (so S
// and dP are computed twice, once in each).
// Causal and/or key padding mask (1 keep, 0 pad); a row whose keys are all masked gives 0 (lse −∞, no gradient).
// Storage stor_t for y, qkv, the pattern, dy and dqkv (float32, or bf16 with -DMT_BF16: names _bf16); lse and D are
// float32; so is all arithmetic (shared-memory tiles included). The bf16 build also has the same kernels on the tensor
// cores (attention_*_tc_*, at the end: mma.sync with bf16 operands), which the host uses on sm_80+ for head sizes that
// are multiples of 16, with attention_pattern for the pattern.
#include "common.cuh"

#define ATT_ROWS 4        /* attention_bwd_delta: rows per block, one warp each */

// ---------------------------------------------------------------- the math
// Forward, per row t over its allowed keys j: s_tj = q_t·k_j·scale, m = max_j s_tj, l = Σ_j exp(s_tj − m),
// y_t = Σ_j exp(s_tj − m)·v_j / l, lse_t = m + log l; the online softmax keeps m and l per row across key tiles and
// rescales the partial y by exp(m_old − m_new) whenever a tile raises the maximum.
// Backward, with s = q·k·scale (scale = 1/√hs), P = softmax(s) per row, y = P·v and dP = dy·vᵀ:
//   dV = Pᵀ·dY,  dS = P ∘ (dP − D) with D_t = Σ_j P_tj·dP_tj = Σ_j P_tj (dy_t·v_j) = dy_t·y_t,
//   dQ = dS·K·scale,  dK = dSᵀ·Q·scale.
// P_tj = exp(s_tj − lse_t) where key j is allowed for query t (kept by the mask, and j ≤ t if causal), else 0; a row
// whose keys are all masked has lse = −∞ and P = 0, so it contributes nothing (its y is 0 and so is its D).

// D[b,h,t] = Σ_d dy[b,t,h,d]·y[b,t,h,d]. One warp per (b, h, t); grid (ceil(T / ATT_ROWS), B·NH), block 32·ATT_ROWS.
extern "C" __global__ void KNAME(attention_bwd_delta)(float* __restrict__ delta, const stor_t* __restrict__ dy,
    const stor_t* __restrict__ y, int B, int T, int C, int NH)
{
    int hs = C / NH, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int t = blockIdx.x * ATT_ROWS + warp;
    float s = 0.0f;
    if (t < T)
    {
        long long o = ((long long)b * T + t) * C + h * hs;
        for (int d = lane; d < hs; d += 32) s = fmaf(ld(dy + o + d), ld(y + o + d), s);
    }
    s = warp_sum(s);   // every lane of the warp takes part (t is the same for the whole warp)
    if (t < T && lane == 0) delta[(long long)bh * T + t] = s;
}

// ---------------------------------------------------------------- the tiled kernels
// Per head-size bound HM (hs ≤ HM; 32, 64 or 128), BT queries and BT keys per tile (64, or 32 for HM 128), 256 threads.
// Shared memory (floats): BT×(HM+4) tiles of q, k, v (and dy in the backward; columns hs…HM−1 and rows past T are
// zeros), one BT×(BT+4) tile for P or dS, and three rows of BT (lse, D, key flags; the forward: rescale factors, key
// flags): (4·BT·(HM+4) + BT·(BT+4) + 3·BT)·4 bytes, at most 86 KiB (sm_80 and newer allow 99 KiB or more); the forward
// needs one tile less. Rows are multiples of 4 floats long, so the inner loops read shared memory as float4/float2 (one
// load for 4 or 2 values); the +4 spreads a column's rows over the banks. Two thread layouts:
//   score layout (S and dP, BT×BT): thread (ty, tx) = (tid / 16, tid % 16) holds rows ty + 16a, columns tx + 16b
//   (a, b < BT/16), each a dot product over d read 4 at a time from the row-major tiles; a row's 16 threads are one
//   half of a warp (reductions over a row: shuffles with lane masks 8, 4, 2, 1);
//   output layout (y, dK, dV or dQ, BT×HM): thread (og, dg) = (tid / DG, tid % DG), DG = HM/4, holds rows
//   RI·og … RI·og+RI−1 (RI = BT·HM / 1024: 4, or 2 for HM 32) and columns 4·dg … 4·dg+3: per step of the sum, one
//   vector load of RI values of P or dS and one float4 of v, dy, q or k, then RI·4 FMAs.
#define ATB_THREADS 256

__device__ __forceinline__ void lds(float (&v)[4], const float* p)   // p 16-byte aligned
{
    float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
}
__device__ __forceinline__ void lds(float (&v)[2], const float* p)   // p 8-byte aligned
{
    float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x; v[1] = t.y;
}

template <int HM, int BT>
struct AttTile
{
    static constexpr int LD = HM + 4;                 // row length of the k, v, q, dy tiles
    static constexpr int LDP = BT + 4;                // row length of the P / dS tile
    static constexpr int N = BT / 16;                 // score layout: N×N per thread
    static constexpr int DG = HM / 4;                 // output layout: threads per row group (4 columns each)
    static constexpr int RI = BT * DG / ATB_THREADS;  // ... and rows per thread
    static_assert(BT % 16 == 0 && ATB_THREADS % DG == 0 && (RI == 2 || RI == 4), "tile shape");
    static constexpr unsigned Floats = 4 * BT * LD + BT * LDP + 3 * BT;      // dynamic shared memory: backward
    static constexpr unsigned FwdFloats = 3 * BT * LD + BT * LDP + 2 * BT;   // ... and forward

    // Rows row0 … row0+BT−1 of a [T, hs] slice (row stride `stride`) into a BT×LD tile; zeros past T and past hs.
    static __device__ __forceinline__ void load(float* dst, const stor_t* src, long long stride, int row0, int T, int hs)
    {
        for (int e = threadIdx.x; e < BT * HM; e += ATB_THREADS)
        {
            int r = e / HM, d = e % HM, t = row0 + r;
            dst[r * LD + d] = (t < T && d < hs) ? ld(src + (long long)t * stride + d) : 0.0f;
        }
    }

    // s[a][b] = Σ_d A[ty+16a][d]·Bm[tx+16b][d] over d < hs rounded up to 4 (the tiles are zero past hs).
    static __device__ __forceinline__ void dots(float (&s)[N][N], const float* A, const float* Bm, int hs, int ty, int tx)
    {
        #pragma unroll
        for (int a = 0; a < N; a++)
            #pragma unroll
            for (int b = 0; b < N; b++) s[a][b] = 0.0f;
        for (int d = 0; d < hs; d += 4)
        {
            float bv[N][4];
            #pragma unroll
            for (int b = 0; b < N; b++) lds(bv[b], Bm + (tx + 16 * b) * LD + d);
            #pragma unroll
            for (int a = 0; a < N; a++)
            {
                float av[4];
                lds(av, A + (ty + 16 * a) * LD + d);
                #pragma unroll
                for (int b = 0; b < N; b++)
                    #pragma unroll
                    for (int k = 0; k < 4; k++) s[a][b] = fmaf(av[k], bv[b][k], s[a][b]);
            }
        }
    }

    // P and dS of the (query tile t0, key tile j0) block, score layout: p = exp(s·scale − lse) where allowed, else 0;
    // ds = p·(dp − D). Reads the q, k, dy, v tiles, lse and D of the rows, and the key flags (1: key < T and kept).
    static __device__ __forceinline__ void scores(float (&p)[N][N], float (&ds)[N][N], const float* Qs, const float* Ks,
        const float* dYs, const float* Vs, const float* Ls, const float* Ds, const float* okS, int t0, int j0, int causal,
        float scale, int hs, int ty, int tx)
    {
        dots(p, Qs, Ks, hs, ty, tx);
        #pragma unroll
        for (int a = 0; a < N; a++)
            #pragma unroll
            for (int b = 0; b < N; b++)
            {
                int r = ty + 16 * a, c = tx + 16 * b;
                float L = Ls[r];
                bool ok = okS[c] != 0.0f && L != NEG_INF && (!causal || j0 + c <= t0 + r);
                p[a][b] = ok ? expf(p[a][b] * scale - L) : 0.0f;
            }
        dots(ds, dYs, Vs, hs, ty, tx);
        #pragma unroll
        for (int a = 0; a < N; a++)
            #pragma unroll
            for (int b = 0; b < N; b++) ds[a][b] = p[a][b] * (ds[a][b] - Ds[ty + 16 * a]);
    }

    // The thread's share of a score-layout tile into PdS as [row][column], or transposed as [column][row].
    template <bool TRANSPOSED>
    static __device__ __forceinline__ void store(float* PdS, const float (&v)[N][N], int ty, int tx)
    {
        #pragma unroll
        for (int a = 0; a < N; a++)
            #pragma unroll
            for (int b = 0; b < N; b++)
            {
                int r = ty + 16 * a, c = tx + 16 * b;
                PdS[TRANSPOSED ? c * LDP + r : r * LDP + c] = v[a][b];
            }
    }

    // acc[i][j] += Σ_{k<BT} W[k][RI·og + i]·X[k][4·dg + j] (output layout): W is the P / dS tile (row length LDP), X a
    // q, k or dy tile (row length LD).
    static __device__ __forceinline__ void accumulate(float (&acc)[RI][4], const float* W, const float* X, int og, int dg)
    {
        #pragma unroll 4
        for (int k = 0; k < BT; k++)
        {
            float w[RI], x[4];
            lds(w, W + k * LDP + RI * og);
            lds(x, X + k * LD + 4 * dg);
            #pragma unroll
            for (int i = 0; i < RI; i++)
                #pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(w[i], x[j], acc[i][j]);
        }
    }

    // lse and D of rows t0 … t0+BT−1 (−∞ and 0 past T).
    static __device__ __forceinline__ void rowStats(float* Ls, float* Ds, const float* lse, const float* delta, long long bhT, int t0, int T)
    {
        for (int r = threadIdx.x; r < BT; r += ATB_THREADS)
        {
            int t = t0 + r;
            Ls[r] = t < T ? lse[bhT + t] : NEG_INF;
            Ds[r] = t < T ? delta[bhT + t] : 0.0f;
        }
    }

    // Flags of keys j0 … j0+BT−1: 1 when the key exists and is kept by the padding mask (causality is per query).
    static __device__ __forceinline__ void keyFlags(float* okS, const int* mask, int b, int j0, int T)
    {
        for (int c = threadIdx.x; c < BT; c += ATB_THREADS)
        {
            int j = j0 + c;
            okS[c] = j < T && (mask == 0 || mask[b * T + j] != 0) ? 1.0f : 0.0f;
        }
    }

    // acc (output layout, rows r0 + RI·og + i) times `scale`, added into dqkv at column offset `part` of head h.
    static __device__ __forceinline__ void addOut(stor_t* dqkv, const float (&acc)[RI][4], float scale, int b, int h, int r0,
        int part, int T, int C, int hs, int og, int dg)
    {
        #pragma unroll
        for (int i = 0; i < RI; i++)
        {
            int t = r0 + RI * og + i;
            if (t >= T) continue;
            stor_t* row = dqkv + ((long long)b * T + t) * 3 * C + part + h * hs;
            #pragma unroll
            for (int j = 0; j < 4; j++)
            {
                int d = 4 * dg + j;
                if (d < hs) add_to(row + d, acc[i][j] * scale);
            }
        }
    }

    // Max (SUM false) or sum over the 16 threads of a score-layout row: the lanes of one half of the warp.
    template <bool SUM>
    static __device__ __forceinline__ float rowReduce(float v)
    {
        #pragma unroll
        for (int o = 8; o > 0; o >>= 1)
        {
            float w = __shfl_xor_sync(0xffffffffu, v, o);
            v = SUM ? v + w : fmaxf(v, w);
        }
        return v;
    }

    // One block per (query tile, b·h): y of its rows over every allowed key tile with the online softmax, lse, and with
    // att the pattern rows (a second pass over the key tiles once lse is known).
    static __device__ __forceinline__ void fwd(float* sm, stor_t* __restrict__ y, float* __restrict__ lse,
        stor_t* __restrict__ att, const stor_t* __restrict__ qkv, const int* __restrict__ mask, int T, int C, int NH,
        int causal)
    {
        float* Ks = sm;  float* Vs = Ks + BT * LD;  float* Qs = Vs + BT * LD;  float* PdS = Qs + BT * LD;
        float* rowS = PdS + BT * LDP;  float* okS = rowS + BT;
        int hs = C / NH, C3 = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
        int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15, og = tid / DG, dg = tid % DG;
        int t0 = (gridDim.x - 1 - blockIdx.x) * BT;   // causal: the longest rows first
        float scale = rsqrtf((float)hs);
        const stor_t* q = qkv + (long long)b * T * C3 + h * hs;
        load(Qs, q, C3, t0, T, hs);

        float m[N], l[N], acc[RI][4];   // m, l: per score-layout row (the same in all 16 threads of the row)
        #pragma unroll
        for (int a = 0; a < N; a++) { m[a] = NEG_INF; l[a] = 0.0f; }
        #pragma unroll
        for (int i = 0; i < RI; i++)
            #pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

        int kEnd = causal ? min(T, t0 + BT) : T;
        for (int j0 = 0; j0 < kEnd; j0 += BT)
        {
            __syncthreads();   // the last step's readers of Ks, Vs, PdS, rowS and okS are done
            load(Ks, q + C, C3, j0, T, hs);
            load(Vs, q + 2 * C, C3, j0, T, hs);
            keyFlags(okS, mask, b, j0, T);
            __syncthreads();
            bool any = false;
            for (int c = 0; c < BT; c++) any |= okS[c] != 0.0f;
            if (!any) continue;   // the whole block: a tile of padded keys changes nothing
            float p[N][N];
            dots(p, Qs, Ks, hs, ty, tx);
            #pragma unroll
            for (int a = 0; a < N; a++)
            {
                int r = ty + 16 * a;
                float mt = NEG_INF;
                #pragma unroll
                for (int bb = 0; bb < N; bb++)
                {
                    int c = tx + 16 * bb;
                    bool ok = okS[c] != 0.0f && (!causal || j0 + c <= t0 + r);
                    p[a][bb] = ok ? p[a][bb] * scale : NEG_INF;
                    mt = fmaxf(mt, p[a][bb]);
                }
                float mNew = fmaxf(m[a], rowReduce<false>(mt));
                // rescale of what the row has so far (1 while the row has seen no allowed key: all of it is 0)
                float corr = mNew == NEG_INF ? 1.0f : expf(m[a] - mNew);
                float rs = 0.0f;
                #pragma unroll
                for (int bb = 0; bb < N; bb++)
                {
                    p[a][bb] = p[a][bb] == NEG_INF ? 0.0f : expf(p[a][bb] - mNew);
                    rs += p[a][bb];
                }
                l[a] = l[a] * corr + rowReduce<true>(rs);
                m[a] = mNew;
                if (tx == 0) rowS[r] = corr;
            }
            store<true>(PdS, p, ty, tx);   // as Pᵀ: [key][query]
            __syncthreads();
            #pragma unroll
            for (int i = 0; i < RI; i++)
            {
                float corr = rowS[RI * og + i];
                #pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] *= corr;
            }
            accumulate(acc, PdS, Vs, og, dg);   // y[r][d] += Σ_c P[r][c]·V[c][d]
        }

        float L[N];
        __syncthreads();   // the last readers of rowS are done
        #pragma unroll
        for (int a = 0; a < N; a++)
        {
            int r = ty + 16 * a, t = t0 + r;
            L[a] = l[a] > 0.0f ? m[a] + logf(l[a]) : NEG_INF;
            if (tx == 0)
            {
                rowS[r] = l[a] > 0.0f ? 1.0f / l[a] : 0.0f;
                if (t < T) lse[(long long)bh * T + t] = L[a];
            }
        }
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < RI; i++)
        {
            int r = RI * og + i, t = t0 + r;
            if (t >= T) continue;
            float inv = rowS[r];
            stor_t* yr = y + ((long long)b * T + t) * C + h * hs;
            #pragma unroll
            for (int j = 0; j < 4; j++)
            {
                int d = 4 * dg + j;
                if (d < hs) st(yr + d, acc[i][j] * inv);
            }
        }
        if (att != 0) patternRows(Ks, okS, Qs, att, q, mask, L, b, bh, t0, T, C, hs, causal, scale, ty, tx);
    }

    // The pattern rows t0 … t0+BT−1 of head bh: p = exp(s·scale − lse) on allowed keys, 0 elsewhere (every key tile:
    // zeros past the diagonal). Qs holds the query tile; L[a] is the lse of row ty + 16a; Ks and okS are free.
    static __device__ __forceinline__ void patternRows(float* Ks, float* okS, const float* Qs, stor_t* __restrict__ att,
        const stor_t* q, const int* __restrict__ mask, const float (&L)[N], int b, int bh, int t0, int T, int C, int hs,
        int causal, float scale, int ty, int tx)
    {
        for (int j0 = 0; j0 < T; j0 += BT)
        {
            bool live = !causal || j0 < t0 + BT;   // the same for the whole block
            float p[N][N] = {};
            if (live)
            {
                __syncthreads();   // the last readers of Ks and okS are done
                load(Ks, q + C, 3 * C, j0, T, hs);
                keyFlags(okS, mask, b, j0, T);
                __syncthreads();
                dots(p, Qs, Ks, hs, ty, tx);
            }
            #pragma unroll
            for (int a = 0; a < N; a++)
                #pragma unroll
                for (int bb = 0; bb < N; bb++)
                {
                    int r = ty + 16 * a, c = tx + 16 * bb, t = t0 + r, j = j0 + c;
                    if (t >= T || j >= T) continue;
                    bool ok = live && L[a] != NEG_INF && okS[c] != 0.0f && (!causal || j <= t);
                    st(att + ((long long)bh * T + t) * T + j, ok ? expf(p[a][bb] * scale - L[a]) : 0.0f);
                }
        }
    }

    // One block per (query tile, b·h): the pattern rows from the lse another kernel saved (the tensor-core forward's
    // second pass). Shared memory as the forward's.
    static __device__ __forceinline__ void pattern(float* sm, stor_t* __restrict__ att, const float* __restrict__ lse,
        const stor_t* __restrict__ qkv, const int* __restrict__ mask, int T, int C, int NH, int causal)
    {
        float* Ks = sm;  float* Qs = Ks + BT * LD;  float* okS = Qs + BT * LD;
        int hs = C / NH, bh = blockIdx.y, b = bh / NH, h = bh % NH;
        int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
        int t0 = blockIdx.x * BT;
        const stor_t* q = qkv + (long long)b * T * 3 * C + h * hs;
        load(Qs, q, 3 * C, t0, T, hs);   // read after patternRows' first barrier
        float L[N];
        #pragma unroll
        for (int a = 0; a < N; a++)
        {
            int t = t0 + ty + 16 * a;
            L[a] = t < T ? lse[(long long)bh * T + t] : NEG_INF;
        }
        patternRows(Ks, okS, Qs, att, q, mask, L, b, bh, t0, T, C, hs, causal, rsqrtf((float)hs), ty, tx);
    }

    // One block per (key tile, b·h): dV = Σ over query tiles of Pᵀ·dY, dK = Σ dSᵀ·Q·scale; added into dqkv's k and v.
    static __device__ __forceinline__ void dkdv(float* sm, stor_t* __restrict__ dqkv, const stor_t* __restrict__ dy,
        const stor_t* __restrict__ qkv, const float* __restrict__ lse, const float* __restrict__ delta,
        const int* __restrict__ mask, int T, int C, int NH, int causal)
    {
        float* Ks = sm;  float* Vs = Ks + BT * LD;  float* Qs = Vs + BT * LD;  float* dYs = Qs + BT * LD;
        float* PdS = dYs + BT * LD;  float* Ls = PdS + BT * LDP;  float* Ds = Ls + BT;  float* okS = Ds + BT;
        int hs = C / NH, C3 = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
        int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15, og = tid / DG, dg = tid % DG;
        int j0 = blockIdx.x * BT;
        float scale = rsqrtf((float)hs);
        const stor_t* q = qkv + (long long)b * T * C3 + h * hs;   // row t at q + t·C3; k at +C, v at +2C
        const stor_t* dyh = dy + (long long)b * T * C + h * hs;
        load(Ks, q + C, C3, j0, T, hs);
        load(Vs, q + 2 * C, C3, j0, T, hs);
        keyFlags(okS, mask, b, j0, T);
        __syncthreads();
        bool any = false;
        for (int c = 0; c < BT; c++) any |= okS[c] != 0.0f;
        if (!any) return;   // the whole block: every key of the tile padded, so dK = dV = 0

        float dK[RI][4], dV[RI][4];
        #pragma unroll
        for (int i = 0; i < RI; i++)
            #pragma unroll
            for (int j = 0; j < 4; j++) { dK[i][j] = 0.0f; dV[i][j] = 0.0f; }

        // causal: queries before j0 see none of these keys (and j0 is a multiple of BT, a query tile's start)
        for (int t0 = causal ? j0 : 0; t0 < T; t0 += BT)
        {
            __syncthreads();   // the last step's readers of Qs, dYs and PdS are done
            load(Qs, q, C3, t0, T, hs);
            load(dYs, dyh, C, t0, T, hs);
            rowStats(Ls, Ds, lse, delta, (long long)bh * T, t0, T);
            __syncthreads();
            float p[N][N], ds[N][N];
            scores(p, ds, Qs, Ks, dYs, Vs, Ls, Ds, okS, t0, j0, causal, scale, hs, ty, tx);
            store<false>(PdS, p, ty, tx);
            __syncthreads();
            accumulate(dV, PdS, dYs, og, dg);   // dV[c][d] += Σ_r P[r][c]·dY[r][d]
            __syncthreads();
            store<false>(PdS, ds, ty, tx);
            __syncthreads();
            accumulate(dK, PdS, Qs, og, dg);    // dK[c][d] += Σ_r dS[r][c]·Q[r][d]
        }
        addOut(dqkv, dK, scale, b, h, j0, C, T, C, hs, og, dg);
        addOut(dqkv, dV, 1.0f, b, h, j0, 2 * C, T, C, hs, og, dg);
    }

    // One block per (query tile, b·h): dQ = Σ over key tiles of dS·K·scale; added into dqkv's q.
    static __device__ __forceinline__ void dq(float* sm, stor_t* __restrict__ dqkv, const stor_t* __restrict__ dy,
        const stor_t* __restrict__ qkv, const float* __restrict__ lse, const float* __restrict__ delta,
        const int* __restrict__ mask, int T, int C, int NH, int causal)
    {
        float* Ks = sm;  float* Vs = Ks + BT * LD;  float* Qs = Vs + BT * LD;  float* dYs = Qs + BT * LD;
        float* PdS = dYs + BT * LD;  float* Ls = PdS + BT * LDP;  float* Ds = Ls + BT;  float* okS = Ds + BT;
        int hs = C / NH, C3 = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
        int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15, og = tid / DG, dg = tid % DG;
        int t0 = (gridDim.x - 1 - blockIdx.x) * BT;   // causal: the longest rows first
        float scale = rsqrtf((float)hs);
        const stor_t* q = qkv + (long long)b * T * C3 + h * hs;
        load(Qs, q, C3, t0, T, hs);
        load(dYs, dy + (long long)b * T * C + h * hs, C, t0, T, hs);
        rowStats(Ls, Ds, lse, delta, (long long)bh * T, t0, T);
        __syncthreads();
        bool any = false;
        for (int r = 0; r < BT; r++) any |= Ls[r] != NEG_INF;
        if (!any) return;   // the whole block: every row fully masked (or past T), so dQ = 0

        float dQ[RI][4];
        #pragma unroll
        for (int i = 0; i < RI; i++)
            #pragma unroll
            for (int j = 0; j < 4; j++) dQ[i][j] = 0.0f;

        int kEnd = causal ? min(T, t0 + BT) : T;
        for (int j0 = 0; j0 < kEnd; j0 += BT)
        {
            __syncthreads();   // the last step's readers of Ks, Vs, PdS and okS are done
            load(Ks, q + C, C3, j0, T, hs);
            load(Vs, q + 2 * C, C3, j0, T, hs);
            keyFlags(okS, mask, b, j0, T);
            __syncthreads();
            any = false;
            for (int c = 0; c < BT; c++) any |= okS[c] != 0.0f;
            if (!any) continue;   // the whole block: a tile of padded keys adds nothing
            float p[N][N], ds[N][N];
            scores(p, ds, Qs, Ks, dYs, Vs, Ls, Ds, okS, t0, j0, causal, scale, hs, ty, tx);
            store<true>(PdS, ds, ty, tx);   // as dSᵀ: [key][query]
            __syncthreads();
            accumulate(dQ, PdS, Ks, og, dg);   // dQ[r][d] += Σ_c dS[r][c]·K[c][d]
        }
        addOut(dqkv, dQ, scale, b, h, t0, 0, T, C, hs, og, dg);
    }
};

// grid (ceil(T / BT), B·NH), block ATB_THREADS, dynamic shared memory AttTile<HM, BT>::FwdFloats·4 bytes (forward) or
// ::Floats·4 bytes (backward; dqkv accumulates).
#define ATT_KERNELS(HM, BT)                                                                                              \
extern "C" __global__ void __launch_bounds__(ATB_THREADS) KNAME(attention_fwd_##HM)(stor_t* __restrict__ y,             \
    float* __restrict__ lse, stor_t* __restrict__ att, const stor_t* __restrict__ qkv, const int* __restrict__ mask,     \
    int B, int T, int C, int NH, int causal)                                                                             \
{                                                                                                                        \
    extern __shared__ float sm[];                                                                                        \
    AttTile<HM, BT>::fwd(sm, y, lse, att, qkv, mask, T, C, NH, causal);                                                  \
}                                                                                                                        \
extern "C" __global__ void __launch_bounds__(ATB_THREADS) KNAME(attention_bwd_dkdv_##HM)(stor_t* __restrict__ dqkv,     \
    const stor_t* __restrict__ dy, const stor_t* __restrict__ qkv, const float* __restrict__ lse,                        \
    const float* __restrict__ delta, const int* __restrict__ mask, int B, int T, int C, int NH, int causal)              \
{                                                                                                                        \
    extern __shared__ float sm[];                                                                                        \
    AttTile<HM, BT>::dkdv(sm, dqkv, dy, qkv, lse, delta, mask, T, C, NH, causal);                                         \
}                                                                                                                        \
extern "C" __global__ void __launch_bounds__(ATB_THREADS) KNAME(attention_bwd_dq_##HM)(stor_t* __restrict__ dqkv,       \
    const stor_t* __restrict__ dy, const stor_t* __restrict__ qkv, const float* __restrict__ lse,                        \
    const float* __restrict__ delta, const int* __restrict__ mask, int B, int T, int C, int NH, int causal)              \
{                                                                                                                        \
    extern __shared__ float sm[];                                                                                        \
    AttTile<HM, BT>::dq(sm, dqkv, dy, qkv, lse, delta, mask, T, C, NH, causal);                                           \
}

ATT_KERNELS(32, 64)
ATT_KERNELS(64, 64)
ATT_KERNELS(128, 32)

#ifdef MT_BF16
// ================================================================ bf16 storage on the tensor cores (sm_80+)
// The same three kernels (forward; backward dK/dV per key tile, dQ per query tile; D from attention_bwd_delta) with the
// four products of each step as mma.sync m16n8k16 (common.cuh's mma_bf16_16816: bf16 operands, float32 accumulation):
//   forward   S = Q·Kᵀ, y += P·V;   dkdv  Sᵀ = K·Qᵀ, dPᵀ = V·dYᵀ, dV += Pᵀ·dY, dK += dSᵀ·Q;   dq  S = Q·Kᵀ, dP = dY·Vᵀ, dQ += dS·K.
// P and dS are rounded to bf16 as operands (as FlashAttention does); the softmax statistics (running max, row sums,
// lse), D and every accumulator stay float32, and exponentials run in log2 units (2^(s·scale·log₂e − lse·log₂e)).
// Head sizes that are multiples of 16 (the mma's k); the host falls back to the kernels above for the others.
//
// Each warp owns 16 rows (an mma tile's M) of its block's queries (forward, dq) or keys (dkdv) and streams the other
// side in tiles through shared memory; S, dP, P and dS never leave the registers. Fragment bookkeeping, with
// g = lane / 4 and t4 = lane mod 4 (see common.cuh):
//   - an accumulator tile c (16 rows × 8 columns) holds rows g (c[0], c[1]) and g + 8 (c[2], c[3]), columns 2·t4 and
//     2·t4 + 1: a row's 8 columns are spread over the 4 lanes of a quad (lanes 4g … 4g+3), so row reductions (softmax
//     max and sum) are two xor-shuffles (1, 2);
//   - two neighbouring accumulator tiles c[2kk], c[2kk+1] of S (or dS) are, element for element, the A fragment of the
//     next product's k-step kk (A rows g / g+8, k pairs 2·t4 / 2·t4+8: aFromC), so P·V and dS·K read P and dS from the
//     registers they were computed in (FlashAttention-2's trick);
//   - a B fragment (B[k][n], pairs along k) is read from a tile stored with k contiguous: X[n][k] in shared memory. So
//     keys are stored row-major for S = Q·Kᵀ (k = head dimension) and transposed (Kt[d][key]) for dQ += dS·K (k = keys);
//     likewise V (transposed for P·V, row-major for dP = dY·Vᵀ), Q and dY (both layouts in dkdv).
// Loads are global → registers → shared memory with two shared-memory stages: tile i+1 is fetched into registers while
// the tensor cores work on tile i, so one barrier per tile suffices (stage s is rewritten at tile i+2, after the barrier
// of tile i+1, which every warp reaches only after its work on tile i). Deterministic: every output element has one
// writer, no atomics.
typedef unsigned int u32;
#define ATC_WARPS 4
#define ATC_THREADS 128
#define ATC_LOG2E 1.4426950408889634f
#define ATC_LN2 0.69314718055994531f

// Two floats as an mma register of two bf16 (lo in the low half), each rounded to nearest even as st() does.
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) { return (u32)f32_to_bf16(lo) | ((u32)f32_to_bf16(hi) << 16); }

__device__ __forceinline__ u32 u4_word(const uint4& v, int k) { return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w; }

// Max and sum over the quad of lanes holding one accumulator row (every lane of the warp takes part).
__device__ __forceinline__ float quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Whether any of a tile's n key flags (0: kept; −∞: padded or past T) is 0: the same in every lane of the warp.
template <int n>
__device__ __forceinline__ bool warp_any_key(const float* kb, int lane)
{
    static_assert(n == 32 || n == 64, "key tile");
    bool ok = kb[lane] == 0.0f;
    if (n == 64) ok = ok || kb[lane + 32] == 0.0f;
    return warp_max(ok ? 1.0f : 0.0f) > 0.0f;
}

// (v0, v1) added in float32 to the bf16 pair at p (4-byte aligned), one rounding each: add_to() on two elements.
__device__ __forceinline__ void add_pair(bf16* p, float v0, float v1)
{
    u32 old = *reinterpret_cast<u32*>(p);
    *reinterpret_cast<u32*>(p) = pack_bf16x2(bf16_to_f32((bf16)(old & 0xffffu)) + v0, bf16_to_f32((bf16)(old >> 16)) + v1);
}

// Rows row0 … row0+ROWS−1, columns 0 … HM−1 of a [T, hs] bf16 slice (row stride `stride` elements) → shared memory,
// row-major (rows of LDR) and/or transposed (rows of LDT). Rows past T and columns past hs are zeros. A task is a row
// pair (2p, 2p+1) × 8 columns, two 16-byte loads (hs, C and the qkv / dy buffers 16-byte aligned: the host checks);
// p varies fastest across threads, so a warp's transposed stores — one 32-bit word per column, row 2p in the low
// half — fill 32 consecutive words of a row.
template <int ROWS, int HM>
struct TcTile
{
    static constexpr int PAIRS = ROWS / 2, CH = HM / 8;
    static constexpr int CNT = PAIRS * CH / ATC_THREADS;   // tasks per thread
    static_assert(CNT >= 1 && PAIRS * CH % ATC_THREADS == 0, "tile shape");
    static constexpr int LDR = HM + 8;    // row-major copy [ROWS][LDR]: 16-byte rows, fragment reads spread over the banks
    static constexpr int LDT = ROWS + 8;  // transposed copy [HM][LDT]

    static __device__ __forceinline__ void fetch(uint4 (&v)[CNT][2], const bf16* src, long long stride, int row0, int T, int hs)
    {
        #pragma unroll
        for (int i = 0; i < CNT; i++)
        {
            int e = threadIdx.x + i * ATC_THREADS, p = e % PAIRS, c = e / PAIRS;
            #pragma unroll
            for (int s = 0; s < 2; s++)
            {
                int r = row0 + 2 * p + s;
                v[i][s] = uint4{0u, 0u, 0u, 0u};
                if (r < T && 8 * c < hs) v[i][s] = *reinterpret_cast<const uint4*>(src + (long long)r * stride + 8 * c);
            }
        }
    }

    static __device__ __forceinline__ void storeRows(bf16* dst, const uint4 (&v)[CNT][2])
    {
        #pragma unroll
        for (int i = 0; i < CNT; i++)
        {
            int e = threadIdx.x + i * ATC_THREADS, p = e % PAIRS, c = e / PAIRS;
            #pragma unroll
            for (int s = 0; s < 2; s++) *reinterpret_cast<uint4*>(dst + (2 * p + s) * LDR + 8 * c) = v[i][s];
        }
    }

    static __device__ __forceinline__ void storeCols(bf16* dst, const uint4 (&v)[CNT][2])
    {
        #pragma unroll
        for (int i = 0; i < CNT; i++)
        {
            int e = threadIdx.x + i * ATC_THREADS, p = e % PAIRS, c = e / PAIRS;
            #pragma unroll
            for (int k = 0; k < 4; k++)   // word k of each row: columns 8c + 2k (low halves) and 8c + 2k + 1 (high)
            {
                u32 a = u4_word(v[i][0], k), b = u4_word(v[i][1], k);
                *reinterpret_cast<u32*>(dst + (8 * c + 2 * k) * LDT + 2 * p) = (a & 0xffffu) | (b << 16);
                *reinterpret_cast<u32*>(dst + (8 * c + 2 * k + 1) * LDT + 2 * p) = (a >> 16) | (b & 0xffff0000u);
            }
        }
    }
};

template <int HM>
struct AttTc
{
    static constexpr int KD = HM / 16;   // k-steps over the head dimension (S, dP)
    static constexpr int DN = HM / 8;    // n-tiles over the head dimension (y, dV, dK, dQ)
    // forward: FMI m-tiles of 16 query rows per warp, FBQ queries per block, key tiles of FBK
    static constexpr int FMI = HM <= 64 ? 2 : 1, FBQ = 16 * FMI * ATC_WARPS, FBK = HM <= 64 ? 64 : 32;
    // backward: 16 keys (dkdv) or queries (dq) per warp, BR per block; streamed query / key tiles of BB
    static constexpr int BR = 16 * ATC_WARPS, BB = HM <= 64 ? 64 : 32;
    typedef TcTile<FBK, HM> FT;
    typedef TcTile<BB, HM> BTL;
    // dynamic shared memory, bytes (CudaBackend.AttentionTcShared has the same sums)
    static constexpr unsigned FwdBytes = 2 * (FBK * FT::LDR + HM * FT::LDT) * 2 + 2 * FBK * 4;
    // dkdv keeps the A fragments of its keys and values in registers for HM ≤ 64; for HM 128 (dK and dV alone are 128
    // registers a thread) it reads them from shared-memory copies of the block's key and value rows instead
    static constexpr bool KV_SMEM = HM > 64;
    typedef TcTile<BR, HM> KVT;
    static constexpr unsigned DkdvBytes = 2 * (2 * BB * BTL::LDR + 2 * HM * BTL::LDT) * 2 + 2 * 2 * BB * 4
        + (KV_SMEM ? 2 * BR * KVT::LDR * 2 : 0);
    static constexpr unsigned DqBytes = 2 * (2 * BB * BTL::LDR + HM * BTL::LDT) * 2 + 2 * BB * 4;
    static_assert(BR % BB == 0, "a key block starts on a query tile (causal dkdv)");

    // A fragments (rows = the 16 rows row0 …, k = the head dimension) straight from global memory: f[kd] is k-step kd.
    // Zeros for rows past T and k-steps past hs. aFrag: one k-step's from a shared tile X[row][k] (rows of ld) instead.
    static __device__ __forceinline__ void aFrags(u32 (&f)[KD][4], const bf16* src, long long stride, int row0, int T,
        int hs, int g, int t4)
    {
        #pragma unroll
        for (int kd = 0; kd < KD; kd++)
            #pragma unroll
            for (int r = 0; r < 4; r++)
            {
                int row = row0 + g + 8 * (r & 1), col = 16 * kd + 2 * t4 + 8 * (r >> 1);
                f[kd][r] = row < T && 16 * kd < hs ? *reinterpret_cast<const u32*>(src + (long long)row * stride + col) : 0u;
            }
    }

    static __device__ __forceinline__ void aFrag(u32 (&f)[4], const bf16* X, int ld, int row0, int kd, int g, int t4)
    {
        #pragma unroll
        for (int r = 0; r < 4; r++)
            f[r] = *reinterpret_cast<const u32*>(X + (row0 + g + 8 * (r & 1)) * ld + 16 * kd + 2 * t4 + 8 * (r >> 1));
    }

    // The B fragment of n-tile n, k-step kk from a shared tile X[n][k] (k contiguous, rows of ld).
    static __device__ __forceinline__ void bFrag(u32 (&f)[2], const bf16* X, int ld, int n, int kk, int g, int t4)
    {
        const bf16* p = X + (8 * n + g) * ld + 16 * kk + 2 * t4;
        f[0] = *reinterpret_cast<const u32*>(p);
        f[1] = *reinterpret_cast<const u32*>(p + 8);
    }

    // The A fragment of k-step kk from accumulator tiles c0 = c[2kk] (columns 16kk … 16kk+7) and c1 = c[2kk+1]
    // (16kk+8 …): a[0] = row g, k 2·t4, 2·t4+1 = c0[0], c0[1]; a[1] = row g+8 = c0[2], c0[3]; a[2], a[3] the same of c1.
    static __device__ __forceinline__ void aFromC(u32 (&a)[4], const float (&c0)[4], const float (&c1)[4])
    {
        a[0] = pack_bf16x2(c0[0], c0[1]);
        a[1] = pack_bf16x2(c0[2], c0[3]);
        a[2] = pack_bf16x2(c1[0], c1[1]);
        a[3] = pack_bf16x2(c1[2], c1[3]);
    }

    // 0 when key j exists and is kept by the padding mask, else −∞ (the forward adds it to the scores).
    static __device__ __forceinline__ float keyBias(const int* mask, int b, int j, int T)
    {
        return j < T && (mask == 0 || mask[b * T + j] != 0) ? 0.0f : NEG_INF;
    }

    // One block per (query tile of FBQ, b·h); warp w owns rows r0 = t0 + 16·FMI·w …, m-tile mi rows r0 + 16mi … .
    // y and lse as attention_fwd's (online softmax over the key tiles); the pattern is attention_pattern's (a second
    // kernel once lse is known).
    static __device__ __forceinline__ void fwd(float* sm, bf16* __restrict__ y, float* __restrict__ lse,
        const bf16* __restrict__ qkv, const int* __restrict__ mask, int T, int C, int NH, int causal)
    {
        constexpr int BK = FBK, NK = BK / 8;
        bf16* Ks = reinterpret_cast<bf16*>(sm);                        // [2][BK][LDR]: keys, row-major (S = Q·Kᵀ)
        bf16* Vt = Ks + 2 * BK * FT::LDR;                              // [2][HM][LDT]: values, transposed (y += P·V)
        float* kb = reinterpret_cast<float*>(Vt + 2 * HM * FT::LDT);   // [2][BK]: key bias, 0 or −∞
        int hs = C / NH, C3 = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
        int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t4 = lane & 3;
        int t0 = (gridDim.x - 1 - blockIdx.x) * FBQ;   // causal: the longest rows first
        int r0 = t0 + 16 * FMI * w;
        float sl2 = rsqrtf((float)hs) * ATC_LOG2E;      // 2^(s·sl2) = exp(s·scale)
        const bf16* q = qkv + (long long)b * T * C3 + h * hs;   // row t at q + t·C3; k at +C, v at +2C

        u32 qf[FMI][KD][4];
        #pragma unroll
        for (int mi = 0; mi < FMI; mi++) aFrags(qf[mi], q, C3, r0 + 16 * mi, T, hs, g, t4);
        // o: y's accumulator tiles; per row half hr (accumulator elements 2hr, 2hr+1 are row r0 + 16mi + g + 8hr): m the
        // running max in log2 units (the same in the row's 4 lanes), l this lane's part of the row sum (quad-summed at the end)
        float o[FMI][DN][4], m[FMI][2], l[FMI][2];
        #pragma unroll
        for (int mi = 0; mi < FMI; mi++)
        {
            #pragma unroll
            for (int dn = 0; dn < DN; dn++)
                #pragma unroll
                for (int e = 0; e < 4; e++) o[mi][dn][e] = 0.0f;
            #pragma unroll
            for (int hr = 0; hr < 2; hr++) { m[mi][hr] = NEG_INF; l[mi][hr] = 0.0f; }
        }

        int kEnd = causal ? min(T, t0 + FBQ) : T, nt = (kEnd + BK - 1) / BK;
        uint4 kr[FT::CNT][2], vr[FT::CNT][2];
        FT::fetch(kr, q + C, C3, 0, T, hs);
        FT::fetch(vr, q + 2 * C, C3, 0, T, hs);
        float kflag = tid < BK ? keyBias(mask, b, tid, T) : 0.0f;
        for (int i = 0; i < nt; i++)
        {
            int j0 = i * BK;
            bf16* K = Ks + (i & 1) * BK * FT::LDR;
            bf16* V = Vt + (i & 1) * HM * FT::LDT;
            float* kbs = kb + (i & 1) * BK;
            FT::storeRows(K, kr);
            FT::storeCols(V, vr);
            if (tid < BK) kbs[tid] = kflag;
            __syncthreads();   // stage i&1 written (its readers of tile i−2 passed the barrier of tile i−1)
            if (i + 1 < nt)
            {
                FT::fetch(kr, q + C, C3, j0 + BK, T, hs);
                FT::fetch(vr, q + 2 * C, C3, j0 + BK, T, hs);
                if (tid < BK) kflag = keyBias(mask, b, j0 + BK + tid, T);
            }
            // the warp: no row here, every row before the tile (causal), or every key of the tile padded
            if (r0 >= T || (causal && j0 > r0 + 16 * FMI - 1) || !warp_any_key<BK>(kbs, lane)) continue;

            // S = Q·Kᵀ: sc[mi][n] is the accumulator tile of rows r0 + 16mi …, keys j0 + 8n …
            float sc[FMI][NK][4];
            #pragma unroll
            for (int mi = 0; mi < FMI; mi++)
                #pragma unroll
                for (int n = 0; n < NK; n++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++) sc[mi][n][e] = 0.0f;
            #pragma unroll
            for (int kd = 0; kd < KD; kd++)
            {
                if (16 * kd >= hs) break;
                #pragma unroll
                for (int n = 0; n < NK; n++)
                {
                    u32 bk[2];
                    bFrag(bk, K, FT::LDR, n, kd, g, t4);
                    #pragma unroll
                    for (int mi = 0; mi < FMI; mi++) mma_bf16_16816(sc[mi][n], qf[mi][kd], bk);
                }
            }

            // online softmax: element e of sc[mi][n] is row r0 + 16mi + g + 8(e>>1), key j0 + 8n + 2·t4 + (e&1); first the
            // scores in log2 units with the key bias and the causal mask, and each row's max over this lane's columns
            bool diag = causal && j0 + BK - 1 > r0;   // some key of the tile after some row of the warp
            float mx[FMI][2];
            #pragma unroll
            for (int mi = 0; mi < FMI; mi++) { mx[mi][0] = NEG_INF; mx[mi][1] = NEG_INF; }
            #pragma unroll
            for (int n = 0; n < NK; n++)
            {
                float2 kbv = *reinterpret_cast<const float2*>(kbs + 8 * n + 2 * t4);
                #pragma unroll
                for (int mi = 0; mi < FMI; mi++)
                    #pragma unroll
                    for (int e = 0; e < 4; e++)
                    {
                        float x = fmaf(sc[mi][n][e], sl2, e & 1 ? kbv.y : kbv.x);
                        if (diag && j0 + 8 * n + 2 * t4 + (e & 1) > r0 + 16 * mi + g + 8 * (e >> 1)) x = NEG_INF;
                        sc[mi][n][e] = x;
                        mx[mi][e >> 1] = fmaxf(mx[mi][e >> 1], x);
                    }
            }
            #pragma unroll
            for (int mi = 0; mi < FMI; mi++)
                #pragma unroll
                for (int hr = 0; hr < 2; hr++)
                {
                    float mNew = fmaxf(m[mi][hr], quad_max(mx[mi][hr]));
                    float mRef = mNew == NEG_INF ? 0.0f : mNew;   // a row with no allowed key yet: every p is 0
                    float corr = exp2f(m[mi][hr] - mRef);         // rescale of what the row has so far
                    m[mi][hr] = mNew;
                    float rs = 0.0f;
                    #pragma unroll
                    for (int n = 0; n < NK; n++)
                        #pragma unroll
                        for (int e1 = 0; e1 < 2; e1++)
                        {
                            float p = exp2f(sc[mi][n][2 * hr + e1] - mRef);
                            sc[mi][n][2 * hr + e1] = p;
                            rs += p;
                        }
                    l[mi][hr] = l[mi][hr] * corr + rs;
                    #pragma unroll
                    for (int dn = 0; dn < DN; dn++) { o[mi][dn][2 * hr] *= corr; o[mi][dn][2 * hr + 1] *= corr; }
                }

            // y += P·V: k-step kk is keys j0 + 16kk …; P's A fragment from sc[mi][2kk], sc[mi][2kk+1]
            #pragma unroll
            for (int kk = 0; kk < BK / 16; kk++)
            {
                u32 pa[FMI][4];
                #pragma unroll
                for (int mi = 0; mi < FMI; mi++) aFromC(pa[mi], sc[mi][2 * kk], sc[mi][2 * kk + 1]);
                #pragma unroll
                for (int dn = 0; dn < DN; dn++)
                {
                    if (8 * dn >= hs) break;
                    u32 bv[2];
                    bFrag(bv, V, FT::LDT, dn, kk, g, t4);
                    #pragma unroll
                    for (int mi = 0; mi < FMI; mi++) mma_bf16_16816(o[mi][dn], pa[mi], bv);
                }
            }
        }

        // y = o / l, lse = ln(2^m · l); a row with no allowed key: y = 0, lse = −∞
        #pragma unroll
        for (int mi = 0; mi < FMI; mi++)
            #pragma unroll
            for (int hr = 0; hr < 2; hr++)
            {
                int row = r0 + 16 * mi + g + 8 * hr;
                float L = quad_sum(l[mi][hr]);
                if (row >= T) continue;
                if (t4 == 0) lse[(long long)bh * T + row] = L > 0.0f ? m[mi][hr] * ATC_LN2 + logf(L) : NEG_INF;
                float inv = L > 0.0f ? 1.0f / L : 0.0f;
                bf16* yr = y + ((long long)b * T + row) * C + h * hs + 2 * t4;
                #pragma unroll
                for (int dn = 0; dn < DN; dn++)
                    if (8 * dn < hs)
                        *reinterpret_cast<u32*>(yr + 8 * dn) = pack_bf16x2(o[mi][dn][2 * hr] * inv, o[mi][dn][2 * hr + 1] * inv);
            }
    }

    // One block per (key tile of BR, b·h); warp w owns keys k0 = j0 + 16w … k0+15 (the M of every product) and
    // streams the query tiles: Sᵀ = K·Qᵀ and dPᵀ = V·dYᵀ (k = head dimension, B from Q and dY row-major), then
    // dV += Pᵀ·dY and dK += dSᵀ·Q (k = the tile's queries, B from Q and dY transposed). Added into dqkv's k and v.
    static __device__ __forceinline__ void dkdv(float* sm, bf16* __restrict__ dqkv, const bf16* __restrict__ dy,
        const bf16* __restrict__ qkv, const float* __restrict__ lse, const float* __restrict__ delta,
        const int* __restrict__ mask, int T, int C, int NH, int causal)
    {
        constexpr int NQ = BB / 8;
        bf16* Qs = reinterpret_cast<bf16*>(sm);   // [2][BB][LDR]  queries, row-major
        bf16* Qt = Qs + 2 * BB * BTL::LDR;        // [2][HM][LDT]  queries, transposed
        bf16* Ys = Qt + 2 * HM * BTL::LDT;        // [2][BB][LDR]  dy, row-major
        bf16* Yt = Ys + 2 * BB * BTL::LDR;        // [2][HM][LDT]  dy, transposed
        float* Ls = reinterpret_cast<float*>(Yt + 2 * HM * BTL::LDT);   // [2][BB] lse·log₂e of the tile's queries (−∞ past T)
        float* Dsm = Ls + 2 * BB;                                         // [2][BB] D of the tile's queries
        bf16* KVs = reinterpret_cast<bf16*>(Dsm + 2 * BB);                // KV_SMEM: [2][BR][LDR] the block's keys, values
        int hs = C / NH, C3 = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
        int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t4 = lane & 3;
        int j0 = blockIdx.x * BR, k0 = j0 + 16 * w;
        float scale = rsqrtf((float)hs), sl2 = scale * ATC_LOG2E;
        const bf16* q = qkv + (long long)b * T * C3 + h * hs;
        const bf16* dyh = dy + (long long)b * T * C + h * hs;

        bool any = false;   // the whole block: every key padded or past T, so dK = dV = 0
        for (int c = 0; c < BR; c++) any |= keyBias(mask, b, j0 + c, T) == 0.0f;
        if (!any) return;

        u32 kf[KV_SMEM ? 1 : KD][4], vf[KV_SMEM ? 1 : KD][4];   // A fragments of the warp's keys and values (in registers)
        if constexpr (KV_SMEM)
        {
            uint4 kv[KVT::CNT][2];   // stored before the loop's first barrier
            KVT::fetch(kv, q + C, C3, j0, T, hs);
            KVT::storeRows(KVs, kv);
            KVT::fetch(kv, q + 2 * C, C3, j0, T, hs);
            KVT::storeRows(KVs + BR * KVT::LDR, kv);
        }
        else
        {
            aFrags(kf, q + C, C3, k0, T, hs, g, t4);
            aFrags(vf, q + 2 * C, C3, k0, T, hs, g, t4);
        }
        bool kok[2];                // keys k0 + g + 8hr kept (the rows of this lane's accumulator elements 2hr, 2hr+1)
        #pragma unroll
        for (int hr = 0; hr < 2; hr++) kok[hr] = keyBias(mask, b, k0 + g + 8 * hr, T) == 0.0f;
        bool live = warp_max(kok[0] || kok[1] ? 1.0f : 0.0f) > 0.0f;   // the warp has a kept key

        float dK[DN][4], dV[DN][4];
        #pragma unroll
        for (int dn = 0; dn < DN; dn++)
            #pragma unroll
            for (int e = 0; e < 4; e++) { dK[dn][e] = 0.0f; dV[dn][e] = 0.0f; }

        // causal: queries before j0 see none of these keys (j0 is a multiple of BB, a query tile's start)
        int tStart = causal ? j0 : 0, nt = (T - tStart + BB - 1) / BB;
        uint4 qr[BTL::CNT][2], yr[BTL::CNT][2];
        float lr = NEG_INF, dr = 0.0f;
        BTL::fetch(qr, q, C3, tStart, T, hs);
        BTL::fetch(yr, dyh, C, tStart, T, hs);
        if (tid < BB && tStart + tid < T) { lr = lse[(long long)bh * T + tStart + tid] * ATC_LOG2E; dr = delta[(long long)bh * T + tStart + tid]; }
        for (int i = 0; i < nt; i++)
        {
            int t0 = tStart + i * BB, st = i & 1;
            bf16* Q = Qs + st * BB * BTL::LDR;   bf16* QT = Qt + st * HM * BTL::LDT;
            bf16* Y = Ys + st * BB * BTL::LDR;   bf16* YT = Yt + st * HM * BTL::LDT;
            float* Lq = Ls + st * BB;            float* Dq = Dsm + st * BB;
            BTL::storeRows(Q, qr);
            BTL::storeCols(QT, qr);
            BTL::storeRows(Y, yr);
            BTL::storeCols(YT, yr);
            if (tid < BB) { Lq[tid] = lr; Dq[tid] = dr; }
            __syncthreads();   // stage st written (its readers of tile i−2 passed the barrier of tile i−1)
            if (i + 1 < nt)
            {
                int tn = t0 + BB;
                BTL::fetch(qr, q, C3, tn, T, hs);
                BTL::fetch(yr, dyh, C, tn, T, hs);
                lr = NEG_INF; dr = 0.0f;
                if (tid < BB && tn + tid < T) { lr = lse[(long long)bh * T + tn + tid] * ATC_LOG2E; dr = delta[(long long)bh * T + tn + tid]; }
            }
            if (!live || (causal && t0 + BB - 1 < k0)) continue;   // the warp: no kept key, or every query before its keys

            // sc = Sᵀ, dp = dPᵀ: tile n is keys k0 …, queries t0 + 8n …; element e is key k0 + g + 8(e>>1), query
            // t0 + 8n + 2·t4 + (e&1)
            float sc[NQ][4], dp[NQ][4];
            #pragma unroll
            for (int n = 0; n < NQ; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) { sc[n][e] = 0.0f; dp[n][e] = 0.0f; }
            #pragma unroll
            for (int kd = 0; kd < KD; kd++)
            {
                if (16 * kd >= hs) break;
                const u32* ka = kf[KV_SMEM ? 0 : kd];
                const u32* va = vf[KV_SMEM ? 0 : kd];
                u32 ks[4], vs[4];
                if constexpr (KV_SMEM)
                {
                    aFrag(ks, KVs, KVT::LDR, 16 * w, kd, g, t4);
                    aFrag(vs, KVs + BR * KVT::LDR, KVT::LDR, 16 * w, kd, g, t4);
                    ka = ks; va = vs;
                }
                #pragma unroll
                for (int n = 0; n < NQ; n++)
                {
                    u32 bq[2], by[2];
                    bFrag(bq, Q, BTL::LDR, n, kd, g, t4);
                    mma_bf16_16816(sc[n], ka, bq);
                    bFrag(by, Y, BTL::LDR, n, kd, g, t4);
                    mma_bf16_16816(dp[n], va, by);
                }
            }
            // P = 2^(s·sl2 − lse·log₂e) where allowed (key kept, query not fully masked, key ≤ query if causal), else 0;
            // dS = P ∘ (dP − D)
            bool diag = causal && t0 < k0 + 15;   // some query of the tile before some key of the warp
            #pragma unroll
            for (int n = 0; n < NQ; n++)
            {
                float2 lq = *reinterpret_cast<const float2*>(Lq + 8 * n + 2 * t4);
                float2 dq = *reinterpret_cast<const float2*>(Dq + 8 * n + 2 * t4);
                #pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int key = k0 + g + 8 * (e >> 1), qry = t0 + 8 * n + 2 * t4 + (e & 1);
                    float L = e & 1 ? lq.y : lq.x, D = e & 1 ? dq.y : dq.x;
                    bool ok = kok[e >> 1] && L != NEG_INF && !(diag && key > qry);
                    float p = ok ? exp2f(fmaf(sc[n][e], sl2, -L)) : 0.0f;
                    sc[n][e] = p;
                    dp[n][e] = p * (dp[n][e] - D);
                }
            }
            // dV += Pᵀ·dY, dK += dSᵀ·Q: k-step kk is queries t0 + 16kk …
            #pragma unroll
            for (int kk = 0; kk < BB / 16; kk++)
            {
                u32 pa[4], da[4];
                aFromC(pa, sc[2 * kk], sc[2 * kk + 1]);
                aFromC(da, dp[2 * kk], dp[2 * kk + 1]);
                #pragma unroll
                for (int dn = 0; dn < DN; dn++)
                {
                    if (8 * dn >= hs) break;
                    u32 by[2], bq[2];
                    bFrag(by, YT, BTL::LDT, dn, kk, g, t4);
                    mma_bf16_16816(dV[dn], pa, by);
                    bFrag(bq, QT, BTL::LDT, dn, kk, g, t4);
                    mma_bf16_16816(dK[dn], da, bq);
                }
            }
        }

        // dK·scale and dV into dqkv (row key, columns 8dn + 2·t4, +1: this lane's elements 2hr, 2hr+1; one writer each)
        #pragma unroll
        for (int hr = 0; hr < 2; hr++)
        {
            int key = k0 + g + 8 * hr;
            if (key >= T) continue;
            bf16* row = dqkv + ((long long)b * T + key) * C3 + h * hs + 2 * t4;
            #pragma unroll
            for (int dn = 0; dn < DN; dn++)
                if (8 * dn < hs)
                {
                    add_pair(row + C + 8 * dn, dK[dn][2 * hr] * scale, dK[dn][2 * hr + 1] * scale);
                    add_pair(row + 2 * C + 8 * dn, dV[dn][2 * hr], dV[dn][2 * hr + 1]);
                }
        }
    }

    // One block per (query tile of BR, b·h); warp w owns queries r0 = t0 + 16w … r0+15 and streams the key tiles:
    // S = Q·Kᵀ and dP = dY·Vᵀ (B from K and V row-major), then dQ += dS·K (B from K transposed). Added into dqkv's q.
    static __device__ __forceinline__ void dq(float* sm, bf16* __restrict__ dqkv, const bf16* __restrict__ dy,
        const bf16* __restrict__ qkv, const float* __restrict__ lse, const float* __restrict__ delta,
        const int* __restrict__ mask, int T, int C, int NH, int causal)
    {
        constexpr int NK = BB / 8;
        bf16* Ks = reinterpret_cast<bf16*>(sm);   // [2][BB][LDR]  keys, row-major
        bf16* Kt = Ks + 2 * BB * BTL::LDR;        // [2][HM][LDT]  keys, transposed
        bf16* Vs = Kt + 2 * HM * BTL::LDT;        // [2][BB][LDR]  values, row-major
        float* kb = reinterpret_cast<float*>(Vs + 2 * BB * BTL::LDR);   // [2][BB] key bias, 0 or −∞
        int hs = C / NH, C3 = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
        int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t4 = lane & 3;
        int t0 = (gridDim.x - 1 - blockIdx.x) * BR, r0 = t0 + 16 * w;   // causal: the longest rows first
        float scale = rsqrtf((float)hs), sl2 = scale * ATC_LOG2E;
        const bf16* q = qkv + (long long)b * T * C3 + h * hs;

        bool any = false;   // the whole block: every row fully masked (or past T), so dQ = 0
        for (int r = 0; r < BR && t0 + r < T; r++) any |= lse[(long long)bh * T + t0 + r] != NEG_INF;
        if (!any) return;

        u32 qf[KD][4], yf[KD][4];   // A fragments of the warp's query rows and their dy
        aFrags(qf, q, C3, r0, T, hs, g, t4);
        aFrags(yf, dy + (long long)b * T * C + h * hs, C, r0, T, hs, g, t4);
        float L2[2], Dr[2];         // rows r0 + g + 8hr (this lane's accumulator elements 2hr, 2hr+1)
        #pragma unroll
        for (int hr = 0; hr < 2; hr++)
        {
            int row = r0 + g + 8 * hr;
            L2[hr] = row < T ? lse[(long long)bh * T + row] * ATC_LOG2E : NEG_INF;
            Dr[hr] = row < T ? delta[(long long)bh * T + row] : 0.0f;
        }
        bool live = warp_max(L2[0] != NEG_INF || L2[1] != NEG_INF ? 1.0f : 0.0f) > 0.0f;   // the warp has a row to do

        float dQ[DN][4];
        #pragma unroll
        for (int dn = 0; dn < DN; dn++)
            #pragma unroll
            for (int e = 0; e < 4; e++) dQ[dn][e] = 0.0f;

        int kEnd = causal ? min(T, t0 + BR) : T, nt = (kEnd + BB - 1) / BB;
        uint4 kr[BTL::CNT][2], vr[BTL::CNT][2];
        BTL::fetch(kr, q + C, C3, 0, T, hs);
        BTL::fetch(vr, q + 2 * C, C3, 0, T, hs);
        float kflag = tid < BB ? keyBias(mask, b, tid, T) : 0.0f;
        for (int i = 0; i < nt; i++)
        {
            int j0 = i * BB, st = i & 1;
            bf16* K = Ks + st * BB * BTL::LDR;   bf16* KT = Kt + st * HM * BTL::LDT;
            bf16* V = Vs + st * BB * BTL::LDR;   float* kbs = kb + st * BB;
            BTL::storeRows(K, kr);
            BTL::storeCols(KT, kr);
            BTL::storeRows(V, vr);
            if (tid < BB) kbs[tid] = kflag;
            __syncthreads();   // stage st written (its readers of tile i−2 passed the barrier of tile i−1)
            if (i + 1 < nt)
            {
                BTL::fetch(kr, q + C, C3, j0 + BB, T, hs);
                BTL::fetch(vr, q + 2 * C, C3, j0 + BB, T, hs);
                if (tid < BB) kflag = keyBias(mask, b, j0 + BB + tid, T);
            }
            // the warp: no row to do, every row before the tile (causal), or every key of the tile padded
            if (!live || (causal && j0 > r0 + 15) || !warp_any_key<BB>(kbs, lane)) continue;

            // sc = S, dp = dP: tile n is rows r0 …, keys j0 + 8n …; element e is row r0 + g + 8(e>>1), key
            // j0 + 8n + 2·t4 + (e&1)
            float sc[NK][4], dp[NK][4];
            #pragma unroll
            for (int n = 0; n < NK; n++)
                #pragma unroll
                for (int e = 0; e < 4; e++) { sc[n][e] = 0.0f; dp[n][e] = 0.0f; }
            #pragma unroll
            for (int kd = 0; kd < KD; kd++)
            {
                if (16 * kd >= hs) break;
                #pragma unroll
                for (int n = 0; n < NK; n++)
                {
                    u32 bk[2], bv[2];
                    bFrag(bk, K, BTL::LDR, n, kd, g, t4);
                    mma_bf16_16816(sc[n], qf[kd], bk);
                    bFrag(bv, V, BTL::LDR, n, kd, g, t4);
                    mma_bf16_16816(dp[n], yf[kd], bv);
                }
            }
            bool diag = causal && j0 + BB - 1 > r0;   // some key of the tile after some row of the warp
            #pragma unroll
            for (int n = 0; n < NK; n++)
            {
                float2 kbv = *reinterpret_cast<const float2*>(kbs + 8 * n + 2 * t4);
                #pragma unroll
                for (int e = 0; e < 4; e++)
                {
                    int row = r0 + g + 8 * (e >> 1), key = j0 + 8 * n + 2 * t4 + (e & 1);
                    float L = L2[e >> 1];
                    bool ok = (e & 1 ? kbv.y : kbv.x) == 0.0f && L != NEG_INF && !(diag && key > row);
                    float p = ok ? exp2f(fmaf(sc[n][e], sl2, -L)) : 0.0f;
                    dp[n][e] = p * (dp[n][e] - Dr[e >> 1]);
                }
            }
            // dQ += dS·K: k-step kk is keys j0 + 16kk …
            #pragma unroll
            for (int kk = 0; kk < BB / 16; kk++)
            {
                u32 da[4];
                aFromC(da, dp[2 * kk], dp[2 * kk + 1]);
                #pragma unroll
                for (int dn = 0; dn < DN; dn++)
                {
                    if (8 * dn >= hs) break;
                    u32 bk[2];
                    bFrag(bk, KT, BTL::LDT, dn, kk, g, t4);
                    mma_bf16_16816(dQ[dn], da, bk);
                }
            }
        }

        #pragma unroll
        for (int hr = 0; hr < 2; hr++)
        {
            int row = r0 + g + 8 * hr;
            if (row >= T) continue;
            bf16* out = dqkv + ((long long)b * T + row) * C3 + h * hs + 2 * t4;
            #pragma unroll
            for (int dn = 0; dn < DN; dn++)
                if (8 * dn < hs) add_pair(out + 8 * dn, dQ[dn][2 * hr] * scale, dQ[dn][2 * hr + 1] * scale);
        }
    }
};

// grid (⌈T / FBQ⌉, B·NH) for the forward, (⌈T / BR⌉, B·NH) for the backward; block ATC_THREADS; dynamic shared memory
// AttTc<HM>::FwdBytes, DkdvBytes, DqBytes. attention_pattern: attention_fwd's grid, block and shared memory.
#define ATT_TC_KERNELS(HM, BT)                                                                                           \
extern "C" __global__ void __launch_bounds__(ATC_THREADS) KNAME(attention_fwd_tc_##HM)(bf16* __restrict__ y,             \
    float* __restrict__ lse, const bf16* __restrict__ qkv, const int* __restrict__ mask, int B, int T, int C, int NH,     \
    int causal)                                                                                                          \
{                                                                                                                        \
    extern __shared__ float sm[];                                                                                        \
    AttTc<HM>::fwd(sm, y, lse, qkv, mask, T, C, NH, causal);                                                             \
}                                                                                                                        \
extern "C" __global__ void __launch_bounds__(ATC_THREADS) KNAME(attention_bwd_dkdv_tc_##HM)(bf16* __restrict__ dqkv,     \
    const bf16* __restrict__ dy, const bf16* __restrict__ qkv, const float* __restrict__ lse,                            \
    const float* __restrict__ delta, const int* __restrict__ mask, int B, int T, int C, int NH, int causal)              \
{                                                                                                                        \
    extern __shared__ float sm[];                                                                                        \
    AttTc<HM>::dkdv(sm, dqkv, dy, qkv, lse, delta, mask, T, C, NH, causal);                                              \
}                                                                                                                        \
extern "C" __global__ void __launch_bounds__(ATC_THREADS) KNAME(attention_bwd_dq_tc_##HM)(bf16* __restrict__ dqkv,       \
    const bf16* __restrict__ dy, const bf16* __restrict__ qkv, const float* __restrict__ lse,                            \
    const float* __restrict__ delta, const int* __restrict__ mask, int B, int T, int C, int NH, int causal)              \
{                                                                                                                        \
    extern __shared__ float sm[];                                                                                        \
    AttTc<HM>::dq(sm, dqkv, dy, qkv, lse, delta, mask, T, C, NH, causal);                                                \
}                                                                                                                        \
extern "C" __global__ void __launch_bounds__(ATB_THREADS, 1) KNAME(attention_pattern_##HM)(stor_t* __restrict__ att,       \
    const float* __restrict__ lse, const stor_t* __restrict__ qkv, const int* __restrict__ mask, int B, int T, int C,    \
    int NH, int causal)                                                                                                  \
{                                                                                                                        \
    extern __shared__ float sm[];                                                                                        \
    AttTile<HM, BT>::pattern(sm, att, lse, qkv, mask, T, C, NH, causal);                                                 \
}

ATT_TC_KERNELS(32, 64)
ATT_TC_KERNELS(64, 64)
ATT_TC_KERNELS(128, 32)
#endif   // MT_BF16
