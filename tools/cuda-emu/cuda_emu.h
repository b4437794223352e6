// cuda_emu.h: what a kernel file needs in order to compile as plain C++ and run on the CPU emulator (see README.md).
// Included before each preprocessed kernels/*.cu. Every CUDA thread of a block is a fiber; __syncthreads and the warp
// shuffles are barriers between those fibers (driver.cpp schedules them), so a missing __syncthreads shows up as a
// wrong result and a barrier that not every thread reaches shows up as a reported deadlock.
#pragma once
#include <cmath>
#include <math.h>   // expf, logf, tanhf, erff, sqrtf, fmaf, fmaxf… in the global namespace, as CUDA C has them
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------- CUDA C keywords
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Blocks run one after another, so a function-local static is the block's shared memory (reused, not cleared,
// between blocks, as on the device). Dynamic shared memory is rewritten by build.sh into a call of
// emu_dynamic_shared(), whose bytes are filled with 0xFF (NaN as float) before every block.
#define __shared__ static

struct emu_dim3 { unsigned int x, y, z; };
extern emu_dim3 emu_threadIdx, emu_blockIdx, emu_blockDim, emu_gridDim;
#define threadIdx emu_threadIdx
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim

struct alignas(16) uint4 { unsigned int x, y, z, w; };
struct alignas(8) uint2 { unsigned int x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };

// ---------------------------------------------------------------- runtime (driver.cpp)
void* emu_dynamic_shared();
void emu_syncthreads();
void emu_warp_exchange(const void* mine, void* all32, int bytes);   // every lane's value, in lane order
int emu_lane();

inline void __syncthreads() { emu_syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { unsigned long long dummy = 0, all[32]; emu_warp_exchange(&dummy, all, 8); }

// ---------------------------------------------------------------- warp shuffles
// All lanes of the warp must take part (the kernels use full masks in warp-convergent code); the runtime reports a
// lane that exited or diverged as an error.
template <class T> T emu_shfl_from(T v, int src)
{
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    T all[32];
    emu_warp_exchange(&v, all, sizeof(T));
    return all[src & 31];
}
template <class T> T __shfl_sync(unsigned, T v, int src, int width = 32)
{
    int lane = emu_lane();
    return emu_shfl_from(v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T> T __shfl_xor_sync(unsigned, T v, int laneMask, int width = 32)
{
    int lane = emu_lane(), src = lane ^ laneMask;
    return emu_shfl_from(v, src >= ((lane & ~(width - 1)) + width) ? lane : src);
}
template <class T> T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32)
{
    int lane = emu_lane(), src = lane + (int)delta;
    return emu_shfl_from(v, (src & ~(width - 1)) != (lane & ~(width - 1)) ? lane : src);
}
template <class T> T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32)
{
    int lane = emu_lane(), src = lane - (int)delta;
    return emu_shfl_from(v, src < (lane & ~(width - 1)) ? lane : src);
}

// ---------------------------------------------------------------- atomics (fibers never interleave inside one)
inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }
inline int atomicAdd(int* p, int v) { int o = *p; *p = o + v; return o; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { auto o = *p; *p = o + v; return o; }
inline int atomicMax(int* p, int v) { int o = *p; if (v > o) *p = v; return o; }
inline int atomicCAS(int* p, int cmp, int v) { int o = *p; if (o == cmp) *p = v; return o; }
inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned v) { unsigned o = *p; if (o == cmp) *p = v; return o; }
inline void __threadfence() {}

// ---------------------------------------------------------------- math
template <class To, class From> inline To emu_bits(From f) { To t; std::memcpy(&t, &f, sizeof t); return t; }
inline float __uint_as_float(unsigned u) { return emu_bits<float>(u); }
inline float __int_as_float(int i) { return emu_bits<float>(i); }
inline unsigned __float_as_uint(float f) { return emu_bits<unsigned>(f); }
inline int __float_as_int(float f) { return emu_bits<int>(f); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

// ---------------------------------------------------------------- tensor cores
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, the one PTX instruction the kernels use, computed from the
// PTX ISA's fragment layout (g = lane / 4, t = lane mod 4; a register holds two bf16, the lower index in the low half):
//   A (16×16, 4 registers): a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1], a2 = A[g][2t+8, 2t+9], a3 = A[g+8][2t+8, 2t+9]
//   B (16×8,  2 registers): b0 = B[2t, 2t+1][g],  b1 = B[2t+8, 2t+9][g]
//   C, D (16×8, 4 floats):  d0 = D[g][2t], d1 = D[g][2t+1], d2 = D[g+8][2t], d3 = D[g+8][2t+1]
// Products of bf16 are exact in float; the sum runs in float, k ascending (the hardware's order is unspecified).
inline float emu_bf16_lo(unsigned r) { return __uint_as_float(r << 16); }
inline float emu_bf16_hi(unsigned r) { return __uint_as_float(r & 0xffff0000u); }
inline void emu_mma_bf16_16816(float* d, const unsigned* a, const unsigned* b)
{
    struct Frag { unsigned a[4], b[2]; };
    Frag mine{{a[0], a[1], a[2], a[3]}, {b[0], b[1]}}, all[32];
    emu_warp_exchange(&mine, all, sizeof(Frag));
    float A[16][16], B[16][8];
    for (int lane = 0; lane < 32; lane++)
    {
        int g = lane >> 2, t = lane & 3;
        const Frag& f = all[lane];
        for (int r = 0; r < 4; r++)
        {
            int row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
            A[row][col] = emu_bf16_lo(f.a[r]);
            A[row][col + 1] = emu_bf16_hi(f.a[r]);
        }
        for (int r = 0; r < 2; r++)
        {
            int k = 2 * t + 8 * r;
            B[k][g] = emu_bf16_lo(f.b[r]);
            B[k + 1][g] = emu_bf16_hi(f.b[r]);
        }
    }
    int lane = emu_lane(), g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++)
    {
        int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        float s = d[i];
        for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];
        d[i] = s;
    }
}

// ---------------------------------------------------------------- registration (generated per kernel file)
typedef void (*emu_invoker_t)(void** params);
struct emu_kernel_entry { const char* name; emu_invoker_t invoke; int maxThreads; };   // maxThreads: __launch_bounds__, 0 if none
constexpr int emu_bound(int maxThreads, int = 0, int = 0) { return maxThreads; }
void emu_register(const char* build, const emu_kernel_entry* entries, int count);

// Calls a kernel with the driver's parameter array: params[i] points at the i-th argument's bytes.
template <auto F> struct emu_invoker;
template <class... A, void (*F)(A...)> struct emu_invoker<F>
{
    template <std::size_t... I> static void call(void** p, std::index_sequence<I...>) { F(*(std::remove_reference_t<A>*)p[I]...); }
    static void invoke(void** p) { call(p, std::index_sequence_for<A...>{}); }
};
