// common.cuh: the few helpers every kernel file uses. No CUDA headers: NVRTC compiles these files alone
// (its built-in math functions — expf, tanhf, erff, sqrtf, rsqrtf — need no include).
#pragma once

typedef unsigned short bf16;   // bfloat16 storage: the top 16 bits of an IEEE float32

__device__ __forceinline__ float bf16_to_f32(bf16 h) { return __uint_as_float(((unsigned int)h) << 16); }

// Round to nearest even; NaN stays a (quiet) NaN.
__device__ __forceinline__ bf16 f32_to_bf16(float f)
{
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (bf16)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds at least 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < nw ? scratch[lane] : 0.0f;
    return warp_sum(r);
}

__device__ __forceinline__ float block_max(float v, float* scratch)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < nw ? scratch[lane] : -__int_as_float(0x7f800000);
    return warp_max(r);
}

// ---------------------------------------------------------------- tensor cores (sm_80+)
// d (16×8, float32) += a (16×16, bf16) · b (16×8, bf16): mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32. Fragment
// layout (g = lane / 4, t4 = lane mod 4; a register holds two bf16, the lower index in the low half):
//   A: a[0] = A[g][2·t4, 2·t4+1], a[1] = A[g+8][2·t4, …], a[2] = A[g][2·t4+8, 2·t4+9], a[3] = A[g+8][2·t4+8, …]
//   B: b[0] = B[2·t4, 2·t4+1][g], b[1] = B[2·t4+8, 2·t4+9][g]
//   C, D: d[0] = D[g][2·t4], d[1] = D[g][2·t4+1], d[2] = D[g+8][2·t4], d[3] = D[g+8][2·t4+1]
// Shared by matmul.cu's GEMMs and attention.cu's tensor-core kernels. Below sm_80 it does nothing (callers check).
__device__ __forceinline__ void mma_bf16_16816(float* d, const unsigned int* a, const unsigned int* b)
{
#if defined(MT_CUDA_EMU)   // the CPU emulator (tools/cuda-emu) computes the instruction from the PTX fragment layout
    emu_mma_bf16_16816(d, a, b);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

#define NEG_INF (-__int_as_float(0x7f800000))

// ---------------------------------------------------------------- column reductions (parameter gradients)
// A parameter gradient that sums over the N rows of a batch (a bias, LayerNorm's γ and β, PReLU's slopes) runs in two
// deterministic stages. One thread per column walking all N rows would leave the GPU nearly idle (768 threads for
// GPT-2's N = 16384 rows, each a chain of 16384 dependent adds). Stage 1 (grid: column blocks × row chunks) writes
// float32 partial sums over chunks of COL_ROWS rows, partial[p·M + j] for chunk p; stage 2 (column_partials_add in
// matmul.cu) adds Σ_p partial[p·M + j], p in order, into the gradient: the same sum every run, one bf16 rounding.
#define COL_ROWS 64

// ---------------------------------------------------------------- storage type of the op kernels
// The op kernels of embedding, layernorm, matmul, attention, gelu, residual and crossentropy are written once over
// `stor_t`: float32, or bf16 when the file is compiled with -DMT_BF16 (the backend's bf16 storage; kernel names then
// end in _bf16, KNAME). Arithmetic is float32 either way: ld() widens on load, st() rounds (to nearest even) on store.
// Saved statistics (layernorm mean/rstd, log-sum-exp, attention's row sums D) and optimizer state stay float32.
__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const bf16* p) { return bf16_to_f32(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(bf16* p, float v) { *p = f32_to_bf16(v); }
__device__ __forceinline__ void add_to(float* p, float v) { *p += v; }
__device__ __forceinline__ void add_to(bf16* p, float v) { *p = f32_to_bf16(bf16_to_f32(*p) + v); }

#ifdef MT_BF16
typedef bf16 stor_t;
#define KNAME(n) n##_bf16
#else
typedef float stor_t;
#define KNAME(n) n
#endif
