// residual.cu: y = a + b; backward passes dy through to both inputs (accumulating).
// Storage stor_t (float32, or bf16 with -DMT_BF16: names _bf16); see common.cuh.
#include "common.cuh"

extern "C" __global__ void KNAME(residual_fwd)(stor_t* __restrict__ y, const stor_t* __restrict__ a, const stor_t* __restrict__ b, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) st(y + i, ld(a + i) + ld(b + i));
}

extern "C" __global__ void KNAME(residual_bwd)(stor_t* __restrict__ da, stor_t* __restrict__ db, const stor_t* __restrict__ dy, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = ld(dy + i);
    add_to(da + i, g);
    add_to(db + i, g);
}
