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
// float32; so is all arithmetic (shared-memory tiles included).
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
        if (att == 0) return;

        // The pattern rows: p = exp(s·scale − lse) on allowed keys, 0 elsewhere (every key tile: zeros past the diagonal).
        for (int j0 = 0; j0 < T; j0 += BT)
        {
            bool live = !causal || j0 < t0 + BT;   // the same for the whole block
            float p[N][N] = {};
            if (live)
            {
                __syncthreads();   // the last readers of Ks and okS are done
                load(Ks, q + C, C3, j0, T, hs);
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
