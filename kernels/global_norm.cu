// global_norm.cu: Σ g² in fixed chunks (one block per chunk, a fixed reduction tree): deterministic for a given
// chunk size; the host adds the chunk totals in float64, as the CPU backend does.
#include "common.cuh"

extern "C" __global__ void sumsq_chunks(float* __restrict__ partial, const float* __restrict__ g, long long n, int chunk)
{
    __shared__ float scratch[32];
    long long start = (long long)blockIdx.x * chunk;
    long long end = start + chunk < n ? start + chunk : n;
    float s = 0.0f;
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) { float x = g[i]; s += x * x; }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

extern "C" __global__ void sumsq_chunks_bf16(float* __restrict__ partial, const bf16* __restrict__ g, long long n, int chunk)
{
    __shared__ float scratch[32];
    long long start = (long long)blockIdx.x * chunk;
    long long end = start + chunk < n ? start + chunk : n;
    float s = 0.0f;
    for (long long i = start + threadIdx.x; i < end; i += blockDim.x) { float x = bf16_to_f32(g[i]); s += x * x; }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
