// layernorm.cu: y = (x − μ)·rstd·γ + β per row of C (biased variance, as torch), saving μ and rstd; and backward.
// Storage stor_t (float32, or bf16 with -DMT_BF16: names _bf16); see common.cuh. μ and rstd are always float32.
#include "common.cuh"

// One warp per row; blockDim.x = 32·rows-per-block.
extern "C" __global__ void KNAME(layernorm_fwd)(stor_t* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
    const stor_t* __restrict__ x, const stor_t* __restrict__ gamma, const stor_t* __restrict__ beta, int N, int C, float eps)
{
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const stor_t* xr = x + (long long)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += ld(xr + c);
    float mu = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = ld(xr + c) - mu; v += d * d; }
    float rs = rsqrtf(warp_sum(v) / C + eps);
    stor_t* yr = y + (long long)row * C;
    for (int c = lane; c < C; c += 32) st(yr + c, (ld(xr + c) - mu) * rs * ld(gamma + c) + ld(beta + c));
    if (lane == 0) { mean[row] = mu; rstd[row] = rs; }
}

// dx += rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·γ. One warp per row.
extern "C" __global__ void KNAME(layernorm_bwd_dx)(stor_t* __restrict__ dx, const stor_t* __restrict__ dy, const stor_t* __restrict__ x,
    const stor_t* __restrict__ gamma, const float* __restrict__ mean, const float* __restrict__ rstd, int N, int C)
{
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const stor_t* xr = x + (long long)row * C;
    const stor_t* dyr = dy + (long long)row * C;
    float mu = mean[row], rs = rstd[row];
    float sd = 0.0f, sdx = 0.0f;
    for (int c = lane; c < C; c += 32)
    {
        float xh = (ld(xr + c) - mu) * rs, d = ld(dyr + c) * ld(gamma + c);
        sd += d; sdx += d * xh;
    }
    float meanD = warp_sum(sd) / C, meanDX = warp_sum(sdx) / C;
    stor_t* dxr = dx + (long long)row * C;
    for (int c = lane; c < C; c += 32)
    {
        float xh = (ld(xr + c) - mu) * rs, d = ld(dyr + c) * ld(gamma + c);
        add_to(dxr + c, (d - meanD - xh * meanDX) * rs);
    }
}

// dγ += Σ_n dy·x̂, dβ += Σ_n dy, stage 1 (see common.cuh): partial sums over chunks of COL_ROWS rows, pg[p·C + c] and
// pb[p·C + c]; column_partials_add (matmul.cu) adds them in. Grid (⌈C / blockDim.x⌉, ⌈N / COL_ROWS⌉).
extern "C" __global__ void KNAME(layernorm_bwd_params_partials)(float* __restrict__ pg, float* __restrict__ pb, const stor_t* __restrict__ dy,
    const stor_t* __restrict__ x, const float* __restrict__ mean, const float* __restrict__ rstd, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x, p = blockIdx.y;
    if (c >= C) return;
    int n1 = min(N, (p + 1) * COL_ROWS);
    float g = 0.0f, b = 0.0f;
    for (int n = p * COL_ROWS; n < n1; n++)
    {
        float d = ld(dy + (long long)n * C + c);
        g += d * (ld(x + (long long)n * C + c) - mean[n]) * rstd[n];
        b += d;
    }
    pg[(long long)p * C + c] = g;
    pb[(long long)p * C + c] = b;
}
