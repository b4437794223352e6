// crossentropy.cu: fused softmax + cross-entropy over rows of V logits; targets == -100 are ignored.
// Logits storage stor_t (float32, or bf16 with -DMT_BF16: names _bf16); lse and the per-row losses are float32.
#include "common.cuh"

// One block per row: lse[n] = log Σ exp(logits), loss[n] = lse − logit[target] (0 when ignored).
extern "C" __global__ void KNAME(crossentropy_fwd)(float* __restrict__ lse, float* __restrict__ loss, const stor_t* __restrict__ logits,
    const int* __restrict__ targets, int N, int V)
{
    __shared__ float scratch[32];
    int n = blockIdx.x;
    if (n >= N) return;
    const stor_t* row = logits + (long long)n * V;
    float m = NEG_INF;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, ld(row + i));
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(ld(row + i) - m);
    s = block_sum(s, scratch);
    if (threadIdx.x == 0)
    {
        float l = m + logf(s);
        lse[n] = l;
        int t = targets[n];
        loss[n] = t == -100 ? 0.0f : l - ld(row + t);
    }
}

// dlogits = scale·(softmax − onehot(target)) on scored rows, 0 on ignored rows. Overwrites; may alias logits.
extern "C" __global__ void KNAME(crossentropy_bwd)(stor_t* dlogits, const stor_t* logits, const float* __restrict__ lse,
    const int* __restrict__ targets, int N, int V, float scale)
{
    int n = blockIdx.x;
    if (n >= N) return;
    int t = targets[n];
    float l = lse[n];
    const stor_t* row = logits + (long long)n * V;
    stor_t* d = dlogits + (long long)n * V;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
    {
        float v = t == -100 ? 0.0f : scale * (expf(ld(row + i) - l) - (i == t ? 1.0f : 0.0f));
        st(d + i, v);   // element i read before it is written, by this thread only: aliasing is safe
    }
}

// total[0] = Σ_n loss[n] in float64 (the loss readout: 8 bytes to the host instead of N floats). One block of exactly
// 256 threads: strided partial sums, then a fixed shared-memory tree, so the result is deterministic.
extern "C" __global__ void __launch_bounds__(256) loss_sum(double* __restrict__ total, const float* __restrict__ loss, int N)
{
    __shared__ double s[256];
    double acc = 0.0;
    for (int i = threadIdx.x; i < N; i += 256) acc += (double)loss[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int o = 128; o > 0; o >>= 1)
    {
        if (threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) total[0] = s[0];
}
