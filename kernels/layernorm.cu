// layernorm.cu: y = (x − μ)·rstd·γ + β per row of C (biased variance, as torch), saving μ and rstd; and backward.
#include "common.cuh"

// One warp per row; blockDim.x = 32·rows-per-block.
extern "C" __global__ void layernorm_fwd(float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
    const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta, int N, int C, float eps)
{
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float* xr = x + (long long)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += xr[c];
    float mu = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = xr[c] - mu; v += d * d; }
    float rs = rsqrtf(warp_sum(v) / C + eps);
    float* yr = y + (long long)row * C;
    for (int c = lane; c < C; c += 32) yr[c] = (xr[c] - mu) * rs * gamma[c] + beta[c];
    if (lane == 0) { mean[row] = mu; rstd[row] = rs; }
}

// dx += rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·γ. One warp per row.
extern "C" __global__ void layernorm_bwd_dx(float* __restrict__ dx, const float* __restrict__ dy, const float* __restrict__ x,
    const float* __restrict__ gamma, const float* __restrict__ mean, const float* __restrict__ rstd, int N, int C)
{
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float* xr = x + (long long)row * C;
    const float* dyr = dy + (long long)row * C;
    float mu = mean[row], rs = rstd[row];
    float sd = 0.0f, sdx = 0.0f;
    for (int c = lane; c < C; c += 32)
    {
        float xh = (xr[c] - mu) * rs, d = dyr[c] * gamma[c];
        sd += d; sdx += d * xh;
    }
    float meanD = warp_sum(sd) / C, meanDX = warp_sum(sdx) / C;
    float* dxr = dx + (long long)row * C;
    for (int c = lane; c < C; c += 32)
    {
        float xh = (xr[c] - mu) * rs, d = dyr[c] * gamma[c];
        dxr[c] += (d - meanD - xh * meanDX) * rs;
    }
}

// dγ += Σ_n dy·x̂, dβ += Σ_n dy: one thread per column, rows in order (deterministic).
extern "C" __global__ void layernorm_bwd_params(float* __restrict__ dgamma, float* __restrict__ dbeta, const float* __restrict__ dy,
    const float* __restrict__ x, const float* __restrict__ mean, const float* __restrict__ rstd, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float g = 0.0f, b = 0.0f;
    for (int n = 0; n < N; n++)
    {
        float d = dy[(long long)n * C + c];
        g += d * (x[(long long)n * C + c] - mean[n]) * rstd[n];
        b += d;
    }
    dgamma[c] += g;
    dbeta[c] += b;
}
