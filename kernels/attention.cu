// attention.cu: multi-head attention over packed qkv [B,T,3C] (q | k | v; head h at columns h·hs..h·hs+hs−1 of each).
// Forward is flash-style: keys and values stream through shared memory in tiles of 32 with an online softmax, so no
// T×T matrix is needed; it saves lse[B,NH,T] and, when att is not null, also writes the pattern [B,NH,T,T] (the op
// set's analysis surface). Causal and/or key padding mask (1 keep, 0 pad); a row whose keys are all masked gives 0.
// Backward (from the saved pattern) is three deterministic kernels: ds, then dq, then dk and dv.
// Storage stor_t for y, qkv, the pattern, dy and dqkv (float32, or bf16 with -DMT_BF16: names _bf16); lse and the dS
// scratch are float32; so is all arithmetic (shared-memory tiles included).
#include "common.cuh"

#define ATT_ROWS 4        /* query rows per block: one warp each */
#define ATT_KT 32         /* keys per tile: one lane each */
#define ATT_HS_MAX 128    /* head size limit (4 output dims per lane) */

__device__ __forceinline__ bool att_key_ok(int key, int t, int T, int causal, const int* mask, int b)
{
    return key < T && (!causal || key <= t) && (mask == 0 || mask[b * T + key] != 0);
}

// grid (ceil(T / ATT_ROWS), B·NH), block 32·ATT_ROWS, dynamic shared memory (ATT_ROWS·hs + 2·ATT_KT·(hs+1)) floats.
extern "C" __global__ void __launch_bounds__(128) KNAME(attention_fwd)(stor_t* __restrict__ y, float* __restrict__ lse,
    stor_t* __restrict__ att, const stor_t* __restrict__ qkv, const int* __restrict__ mask, int B, int T, int C, int NH, int causal)
{
    extern __shared__ float sm[];
    int hs = C / NH, C3 = 3 * C, ldk = hs + 1;   // padded row of the key/value tiles
    float* qs = sm;                         // [ATT_ROWS][hs]
    float* ks = qs + ATT_ROWS * hs;         // [ATT_KT][hs+1]
    float* vs = ks + ATT_KT * ldk;          // [ATT_KT][hs+1]
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int t = blockIdx.x * ATT_ROWS + warp;
    bool live = t < T;
    float scale = rsqrtf((float)hs);
    const stor_t* base = qkv + (long long)b * T * C3 + h * hs;
    for (int d = lane; d < hs; d += 32) qs[warp * hs + d] = live ? ld(base + (long long)t * C3 + d) : 0.0f;

    float m = NEG_INF, l = 0.0f, acc[ATT_HS_MAX / 32];
    #pragma unroll
    for (int i = 0; i < ATT_HS_MAX / 32; i++) acc[i] = 0.0f;

    int tLast = blockIdx.x * ATT_ROWS + ATT_ROWS - 1;
    int kEnd = causal ? min(T, tLast + 1) : T;
    for (int k0 = 0; k0 < kEnd; k0 += ATT_KT)
    {
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_KT * hs; e += blockDim.x)
        {
            int j = e / hs, d = e % hs, key = k0 + j;
            bool in = key < T;
            ks[j * ldk + d] = in ? ld(base + (long long)key * C3 + C + d) : 0.0f;
            vs[j * ldk + d] = in ? ld(base + (long long)key * C3 + 2 * C + d) : 0.0f;
        }
        __syncthreads();
        if (!live) continue;
        int key = k0 + lane;
        bool ok = att_key_ok(key, t, T, causal, mask, b);
        float s = NEG_INF;
        if (ok)
        {
            s = 0.0f;
            for (int d = 0; d < hs; d++) s = fmaf(qs[warp * hs + d], ks[lane * ldk + d], s);
            s *= scale;
        }
        float mt = warp_max(s);
        if (mt == NEG_INF) continue;           // every key of this tile masked for this row
        float mNew = fmaxf(m, mt);
        float corr = m == NEG_INF ? 0.0f : expf(m - mNew);
        float p = ok ? expf(s - mNew) : 0.0f;
        l = l * corr + warp_sum(p);
        #pragma unroll
        for (int i = 0; i < ATT_HS_MAX / 32; i++) acc[i] *= corr;
        for (int j = 0; j < ATT_KT; j++)
        {
            float pj = __shfl_sync(0xffffffffu, p, j);
            if (pj == 0.0f) continue;
            #pragma unroll
            for (int i = 0; i < ATT_HS_MAX / 32; i++)
            {
                int d = lane + 32 * i;
                if (d < hs) acc[i] = fmaf(pj, vs[j * ldk + d], acc[i]);
            }
        }
        m = mNew;
    }
    if (!live) return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    stor_t* yr = y + ((long long)b * T + t) * C + h * hs;
    #pragma unroll
    for (int i = 0; i < ATT_HS_MAX / 32; i++)
    {
        int d = lane + 32 * i;
        if (d < hs) st(yr + d, acc[i] * inv);
    }
    float L = l > 0.0f ? m + logf(l) : NEG_INF;
    if (lane == 0) lse[((long long)bh) * T + t] = L;
    if (att)
    {
        // The pattern row, recomputed from q, k and lse: p = exp(s − lse) on allowed keys, 0 elsewhere.
        stor_t* pr = att + ((long long)bh * T + t) * T;
        for (int key = lane; key < T; key += 32)
        {
            float p = 0.0f;
            if (L != NEG_INF && att_key_ok(key, t, T, causal, mask, b))
            {
                const stor_t* kr = base + (long long)key * C3 + C;
                float s = 0.0f;
                for (int d = 0; d < hs; d++) s = fmaf(qs[warp * hs + d], ld(kr + d), s);
                p = expf(s * scale - L);
            }
            st(pr + key, p);
        }
    }
}

// ds[b,h,t,:] = p ⊙ (dp − Σ p·dp)·scale with dp[t2] = dy[t]·v[t2]. One warp per (b, h, t); block 32·ATT_ROWS.
extern "C" __global__ void KNAME(attention_bwd_ds)(float* __restrict__ ds, const stor_t* __restrict__ dy, const stor_t* __restrict__ qkv,
    const stor_t* __restrict__ att, int B, int T, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int t = blockIdx.x * ATT_ROWS + warp;
    if (t >= T) return;
    const stor_t* p = att + ((long long)bh * T + t) * T;
    const stor_t* dyr = dy + ((long long)b * T + t) * C + h * hs;
    float* dsr = ds + ((long long)bh * T + t) * T;
    float pdp = 0.0f;
    for (int key = lane; key < T; key += 32)
    {
        float dp = 0.0f, pk = ld(p + key);
        if (pk != 0.0f)
        {
            const stor_t* vr = qkv + ((long long)b * T + key) * C3 + 2 * C + h * hs;
            for (int d = 0; d < hs; d++) dp = fmaf(ld(dyr + d), ld(vr + d), dp);
        }
        dsr[key] = dp;
        pdp += pk * dp;
    }
    pdp = warp_sum(pdp);
    float scale = rsqrtf((float)hs);
    for (int key = lane; key < T; key += 32) dsr[key] = ld(p + key) * (dsr[key] - pdp) * scale;
}

// dq[b,t,h,:] += Σ_t2 ds[b,h,t,t2]·k[b,t2,h,:]. One thread per (b, t, c) with c = h·hs + d.
extern "C" __global__ void KNAME(attention_bwd_dq)(stor_t* __restrict__ dqkv, const float* __restrict__ ds, const stor_t* __restrict__ qkv,
    int B, int T, int C, int NH)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    int hs = C / NH, C3 = 3 * C;
    int c = (int)(i % C), h = c / hs;
    long long bt = i / C;
    int b = (int)(bt / T), t = (int)(bt % T);
    const float* dsr = ds + (((long long)b * NH + h) * T + t) * T;
    const stor_t* kc = qkv + (long long)b * T * C3 + C + c;
    float s = 0.0f;
    for (int t2 = 0; t2 < T; t2++) s = fmaf(dsr[t2], ld(kc + (long long)t2 * C3), s);
    add_to(dqkv + bt * C3 + c, s);
}

// dk[b,t2,h,:] += Σ_t ds[b,h,t,t2]·q[b,t,h,:];  dv[b,t2,h,:] += Σ_t p[b,h,t,t2]·dy[b,t,h,:]. One thread per (b, t2, c).
extern "C" __global__ void KNAME(attention_bwd_dkdv)(stor_t* __restrict__ dqkv, const float* __restrict__ ds, const stor_t* __restrict__ att,
    const stor_t* __restrict__ dy, const stor_t* __restrict__ qkv, int B, int T, int C, int NH)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)B * T * C) return;
    int hs = C / NH, C3 = 3 * C;
    int c = (int)(i % C), h = c / hs;
    long long bt = i / C;
    int b = (int)(bt / T), t2 = (int)(bt % T);
    long long plane = ((long long)b * NH + h) * T * T;
    const stor_t* qc = qkv + (long long)b * T * C3 + c;
    const stor_t* dyc = dy + (long long)b * T * C + c;
    float sk = 0.0f, sv = 0.0f;
    for (int t = 0; t < T; t++)
    {
        long long pi = plane + (long long)t * T + t2;
        sk = fmaf(ds[pi], ld(qc + (long long)t * C3), sk);
        sv = fmaf(ld(att + pi), ld(dyc + (long long)t * C), sv);
    }
    add_to(dqkv + bt * C3 + C + c, sk);
    add_to(dqkv + bt * C3 + 2 * C + c, sv);
}
