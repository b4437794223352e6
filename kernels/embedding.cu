// embedding.cu: x[b,t,:] = wte[ids[b,t]] + wpe[t] (+ wtt[types[b,t]]), and its backward (scatter-add).
// Storage stor_t (float32, or bf16 with -DMT_BF16: names _bf16); see common.cuh.
#include "common.cuh"

// One thread per element of x. types may be null (type 0 everywhere); wtt null when the model has no type table.
extern "C" __global__ void KNAME(embedding_fwd)(stor_t* __restrict__ x, const int* __restrict__ ids, const int* __restrict__ types,
    const stor_t* __restrict__ wte, const stor_t* __restrict__ wpe, const stor_t* __restrict__ wtt, int B, int T, int C)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)B * T * C;
    if (i >= total) return;
    int c = (int)(i % C);
    long long n = i / C;
    int t = (int)(n % T);
    float v = ld(wte + (long long)ids[n] * C + c) + ld(wpe + (long long)t * C + c);
    if (wtt) v += ld(wtt + (long long)(types ? types[n] : 0) * C + c);
    st(x + i, v);
}

// Table gradient as a gather: the host groups the token positions by table row (a stable counting sort), so that row u
// of the group list (table row rows[u]) owns positions order[start[u]] … order[start[u+1] − 1], in increasing n. One
// block per distinct row, threads over the columns: dw[rows[u], c] += Σ_k dx[order[k], c], summed in float32 in token
// order and added once (deterministic; one bf16 rounding per row). A thread per column walking all N tokens instead
// would be a chain of N dependent read-modify-writes.
extern "C" __global__ void KNAME(embedding_bwd_rows)(stor_t* __restrict__ dw, const stor_t* __restrict__ dx,
    const int* __restrict__ order, const int* __restrict__ start, const int* __restrict__ rows, int C)
{
    int u = blockIdx.x, k0 = start[u], k1 = start[u + 1];
    stor_t* dwr = dw + (long long)rows[u] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
    {
        float s = 0.0f;
        for (int k = k0; k < k1; k++) s += ld(dx + (long long)order[k] * C + c);
        add_to(dwr + c, s);
    }
}

extern "C" __global__ void KNAME(embedding_bwd_positions)(stor_t* __restrict__ dwpe, const stor_t* __restrict__ dx, int B, int T, int C)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * C) return;
    float s = 0.0f;
    for (int b = 0; b < B; b++) s += ld(dx + (long long)b * T * C + i);
    add_to(dwpe + i, s);
}
