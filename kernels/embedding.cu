// embedding.cu: x[b,t,:] = wte[ids[b,t]] + wpe[t] (+ wtt[types[b,t]]), and its backward (scatter-add).
// Storage stor_t (float32, or bf16 with -DMT_BF16: names _bf16); see common.cuh.
#include "common.cuh"

// One thread per element of x. types may be null (type 0 everywhere); wtt null when the model has no type table.
extern "C" __global__ void KNAME(embedding_fwd)(stor_t* __restrict__ x, const int* __restrict__ ids, const int* __restrict__ types,
    const stor_t* __restrict__ wte, const stor_t* __restrict__ wpe, const stor_t* __restrict__ wtt, int B, int T, int C)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)B * T * C;
    if (i >= total) return;
    int c = (int)(i % C);
    long long n = i / C;
    int t = (int)(n % T);
    float v = ld(wte + (long long)ids[n] * C + c) + ld(wpe + (long long)t * C + c);
    if (wtt) v += ld(wtt + (long long)(types ? types[n] : 0) * C + c);
    st(x + i, v);
}

// Deterministic scatter-add: one thread per column c walks the rows in (b, t) order, so a table row hit by several
// tokens accumulates in the same order as the CPU backend. dwpe: one thread per (t, c) sums over b.
extern "C" __global__ void KNAME(embedding_bwd_tables)(stor_t* __restrict__ dwte, stor_t* __restrict__ dwtt,
    const stor_t* __restrict__ dx, const int* __restrict__ ids, const int* __restrict__ types, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++)
    {
        float g = ld(dx + (long long)n * C + c);
        add_to(dwte + (long long)ids[n] * C + c, g);
        if (dwtt) add_to(dwtt + (long long)(types ? types[n] : 0) * C + c, g);
    }
}

extern "C" __global__ void KNAME(embedding_bwd_positions)(stor_t* __restrict__ dwpe, const stor_t* __restrict__ dx, int B, int T, int C)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * C) return;
    float s = 0.0f;
    for (int b = 0; b < B; b++) s += ld(dx + (long long)b * T * C + i);
    add_to(dwpe + i, s);
}

#ifdef MT_BF16
// bf16 storage: the tables' scatter-add accumulates in a float32 scratch (zeroed by the host), so that a row hit by many
// tokens is rounded to bf16 once per backward instead of once per token; add_f32_bf16 then adds the scratch into the
// bf16 gradient. Same thread layout and row order as embedding_bwd_tables.
extern "C" __global__ void embedding_bwd_tables_f32acc_bf16(float* __restrict__ dwte32, float* __restrict__ dwtt32,
    const bf16* __restrict__ dx, const int* __restrict__ ids, const int* __restrict__ types, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++)
    {
        float g = bf16_to_f32(dx[(long long)n * C + c]);
        dwte32[(long long)ids[n] * C + c] += g;
        if (dwtt32) dwtt32[(long long)(types ? types[n] : 0) * C + c] += g;
    }
}

// dst[i] += src[i] (bf16 += float32, one rounding).
extern "C" __global__ void add_f32_bf16(bf16* __restrict__ dst, const float* __restrict__ src, long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = f32_to_bf16(bf16_to_f32(dst[i]) + src[i]);
}
#endif
