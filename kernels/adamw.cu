// adamw.cu: PyTorch's AdamW (decoupled weight decay) and plain SGD over float32 master weights;
// adamw_bf16 also writes a bf16 copy of the updated weights for bf16-storage forward/backward.
#include "common.cuh"

// p ← p(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; p ← p − stepSize·m/(√v·invSqrtBc2 + ε)
// with g = gradScale·grad, stepSize = lr/(1−β1ᵗ), invSqrtBc2 = 1/√(1−β2ᵗ) (computed on the host in float64).
__device__ __forceinline__ float adamw_one(float* p, float* m, float* v, float g, float b1, float b2, float decay,
    float stepSize, float invSqrtBc2, float eps)
{
    float mi = b1 * *m + (1.0f - b1) * g;
    float vi = b2 * *v + (1.0f - b2) * g * g;
    float pi = *p * decay - stepSize * mi / (sqrtf(vi) * invSqrtBc2 + eps);
    *m = mi; *v = vi; *p = pi;
    return pi;
}

extern "C" __global__ void adamw_f32(float* __restrict__ p, const float* __restrict__ grad, float* __restrict__ m,
    float* __restrict__ v, long long n, float b1, float b2, float decay, float stepSize, float invSqrtBc2, float eps, float gradScale)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    adamw_one(p + i, m + i, v + i, grad[i] * gradScale, b1, b2, decay, stepSize, invSqrtBc2, eps);
}

extern "C" __global__ void adamw_bf16(float* __restrict__ master, bf16* __restrict__ p16, const bf16* __restrict__ grad,
    float* __restrict__ m, float* __restrict__ v, long long n, float b1, float b2, float decay, float stepSize,
    float invSqrtBc2, float eps, float gradScale)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float pi = adamw_one(master + i, m + i, v + i, bf16_to_f32(grad[i]) * gradScale, b1, b2, decay, stepSize, invSqrtBc2, eps);
    p16[i] = f32_to_bf16(pi);
}

// p ← p(1 − lr·wd) − lr·gradScale·g
extern "C" __global__ void sgd_f32(float* __restrict__ p, const float* __restrict__ grad, long long n, float decay, float step)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = p[i] * decay + step * grad[i];
}

// SGD on bf16 storage: the float32 master weight is updated and a bf16 copy written for the kernels that read it.
extern "C" __global__ void sgd_bf16(float* __restrict__ master, bf16* __restrict__ p16, const bf16* __restrict__ grad, long long n,
    float decay, float step)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = master[i] * decay + step * bf16_to_f32(grad[i]);
    master[i] = p;
    p16[i] = f32_to_bf16(p);
}
