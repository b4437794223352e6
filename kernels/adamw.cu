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

// SGD with momentum (PyTorch's; Nesterov when nesterov ≠ 0), then grad ← 0: g' = gradScale·g + wd·p,
// buf ← momentum·buf + g', p ← p − lr·(nesterov ? g' + momentum·buf : buf). buf is float32 in either storage.
__device__ __forceinline__ float sgdm_one(float p, float* buf, float g, float lr, float momentum, int nesterov, float wd, float gradScale)
{
    float gj = g * gradScale + wd * p;
    float b = momentum * *buf + gj;
    *buf = b;
    return p - lr * (nesterov ? gj + momentum * b : b);
}

extern "C" __global__ void sgdm_f32(float* __restrict__ p, float* __restrict__ grad, float* __restrict__ buf, long long n,
    float lr, float momentum, int nesterov, float wd, float gradScale)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    p[i] = sgdm_one(p[i], buf + i, grad[i], lr, momentum, nesterov, wd, gradScale);
    grad[i] = 0.0f;
}

extern "C" __global__ void sgdm_bf16(float* __restrict__ master, bf16* __restrict__ p16, bf16* __restrict__ grad, float* __restrict__ buf,
    long long n, float lr, float momentum, int nesterov, float wd, float gradScale)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float p = sgdm_one(master[i], buf + i, bf16_to_f32(grad[i]), lr, momentum, nesterov, wd, gradScale);
    master[i] = p;
    p16[i] = f32_to_bf16(p);
    grad[i] = 0;
}

// ---------------------------------------------------------------- gauge-fixed training: free entries only
// idx[0 … n−1] lists the free entries of a parameter (sorted flat indices); its moments m, v are compact (entry i of m
// belongs to parameter entry idx[i]). The fixed entries are never touched. Same update as adamw_f32 / sgd_f32.
extern "C" __global__ void adamw_masked_f32(float* __restrict__ p, const float* __restrict__ grad, float* __restrict__ m,
    float* __restrict__ v, const int* __restrict__ idx, long long n, float b1, float b2, float decay, float stepSize,
    float invSqrtBc2, float eps, float gradScale)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long k = idx[i];
    adamw_one(p + k, m + i, v + i, grad[k] * gradScale, b1, b2, decay, stepSize, invSqrtBc2, eps);
}

extern "C" __global__ void adamw_masked_bf16(float* __restrict__ master, bf16* __restrict__ p16, const bf16* __restrict__ grad,
    float* __restrict__ m, float* __restrict__ v, const int* __restrict__ idx, long long n, float b1, float b2, float decay,
    float stepSize, float invSqrtBc2, float eps, float gradScale)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long k = idx[i];
    float pi = adamw_one(master + k, m + i, v + i, bf16_to_f32(grad[k]) * gradScale, b1, b2, decay, stepSize, invSqrtBc2, eps);
    p16[k] = f32_to_bf16(pi);
}

extern "C" __global__ void sgd_masked_f32(float* __restrict__ p, const float* __restrict__ grad, const int* __restrict__ idx,
    long long n, float decay, float step)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long k = idx[i];
    p[k] = p[k] * decay + step * grad[k];
}

extern "C" __global__ void sgd_masked_bf16(float* __restrict__ master, bf16* __restrict__ p16, const bf16* __restrict__ grad,
    const int* __restrict__ idx, long long n, float decay, float step)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long k = idx[i];
    float p = master[k] * decay + step * bf16_to_f32(grad[k]);
    master[k] = p;
    p16[k] = f32_to_bf16(p);
}

// t[idx[i]] = 0 for i < n (the fixed entries' gradients).
extern "C" __global__ void zero_entries_f32(float* __restrict__ t, const int* __restrict__ idx, long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) t[idx[i]] = 0.0f;
}

extern "C" __global__ void zero_entries_bf16(bf16* __restrict__ t, const int* __restrict__ idx, long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) t[idx[i]] = 0;
}
