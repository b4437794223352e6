// gelu.cu: tanh form (GPT-2) and erf form (BERT), forward (overwrites y) and backward (dx += g'(x)·dy).
#include "common.cuh"

#define GELU_K 0.7978845608028654f   /* √(2/π) */
#define GELU_C 0.044715f

extern "C" __global__ void gelu_tanh_fwd(float* __restrict__ y, const float* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    y[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + GELU_C * v * v * v)));
}

extern "C" __global__ void gelu_tanh_bwd(float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i], v2 = v * v;
    float th = tanhf(GELU_K * v * (1.0f + GELU_C * v2));
    float g = 0.5f * (1.0f + th) + 0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_C * v2);
    dx[i] += g * dy[i];
}

extern "C" __global__ void gelu_erf_fwd(float* __restrict__ y, const float* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    y[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
}

extern "C" __global__ void gelu_erf_bwd(float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    float g = 0.5f * (1.0f + erff(v * 0.7071067811865476f)) + v * 0.3989422804014327f * expf(-0.5f * v * v);
    dx[i] += g * dy[i];
}
