// gelu.cu: tanh form (GPT-2) and erf form (BERT), forward (overwrites y) and backward (dx += g'(x)·dy); PReLU.
// Storage stor_t (float32, or bf16 with -DMT_BF16: names _bf16); see common.cuh.
#include "common.cuh"

#define GELU_K 0.7978845608028654f   /* √(2/π) */
#define GELU_C 0.044715f

extern "C" __global__ void KNAME(gelu_tanh_fwd)(stor_t* __restrict__ y, const stor_t* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = ld(x + i);
    st(y + i, 0.5f * v * (1.0f + tanhf(GELU_K * (v + GELU_C * v * v * v))));
}

extern "C" __global__ void KNAME(gelu_tanh_bwd)(stor_t* __restrict__ dx, const stor_t* __restrict__ dy, const stor_t* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = ld(x + i), v2 = v * v;
    float th = tanhf(GELU_K * v * (1.0f + GELU_C * v2));
    float g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * v2);
    add_to(dx + i, g * ld(dy + i));
}

extern "C" __global__ void KNAME(gelu_erf_fwd)(stor_t* __restrict__ y, const stor_t* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = ld(x + i);
    st(y + i, 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)));
}

extern "C" __global__ void KNAME(gelu_erf_bwd)(stor_t* __restrict__ dx, const stor_t* __restrict__ dy, const stor_t* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = ld(x + i);
    float g = 0.5f * (1.0f + erff(v * 0.7071067811865476f)) + v * 0.3989422804014327f * expf(-0.5f * v * v);
    add_to(dx + i, g * ld(dy + i));
}

// PReLU (the symmetry-breaking MLP option): y = x (x > 0), a_f·x (x ≤ 0) over rows [N, F] with per-feature slopes a [F].
// One thread per element; f = i mod F.
extern "C" __global__ void KNAME(prelu_fwd)(stor_t* __restrict__ y, const stor_t* __restrict__ x, const stor_t* __restrict__ a, int N, int F)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * F) return;
    float v = ld(x + i);
    st(y + i, v > 0.0f ? v : ld(a + (int)(i % F)) * v);
}

// dx += dy·(x > 0 ? 1 : a_f). One thread per element.
extern "C" __global__ void KNAME(prelu_bwd_dx)(stor_t* __restrict__ dx, const stor_t* __restrict__ dy, const stor_t* __restrict__ x,
    const stor_t* __restrict__ a, int N, int F)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * F) return;
    float g = ld(dy + i);
    add_to(dx + i, ld(x + i) > 0.0f ? g : ld(a + (int)(i % F)) * g);
}

// da_f += Σ_n dy·x over the rows where x ≤ 0 (not x > 0: a NaN counts, as on the CPU), stage 1 (see common.cuh):
// partial[p·F + f] over chunks of COL_ROWS rows; column_partials_add (matmul.cu) adds them in.
extern "C" __global__ void KNAME(prelu_bwd_slopes_partials)(float* __restrict__ partial, const stor_t* __restrict__ dy, const stor_t* __restrict__ x,
    int N, int F)
{
    int f = blockIdx.x * blockDim.x + threadIdx.x, p = blockIdx.y;
    if (f >= F) return;
    int n1 = min(N, (p + 1) * COL_ROWS);
    float s = 0.0f;
    for (int n = p * COL_ROWS; n < n1; n++)
    {
        long long i = (long long)n * F + f;
        float v = ld(x + i);
        if (!(v > 0.0f)) s += ld(dy + i) * v;
    }
    partial[(long long)p * F + f] = s;
}
