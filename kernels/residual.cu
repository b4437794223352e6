// residual.cu: y = a + b; backward passes dy through to both inputs (accumulating).
#include "common.cuh"

extern "C" __global__ void residual_fwd(float* __restrict__ y, const float* __restrict__ a, const float* __restrict__ b, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

extern "C" __global__ void residual_bwd(float* __restrict__ da, float* __restrict__ db, const float* __restrict__ dy, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = dy[i];
    da[i] += g;
    db[i] += g;
}
