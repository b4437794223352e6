// driver.cpp: a CPU stand-in for libcuda.so.1 — the driver API calls MiniTransformer's binding makes (CudaApi.cs) —
// that runs the kernels of kernels/*.cu, compiled as C++ by build.sh, instead of loading PTX/CUBIN. It reports an
// sm_80 device, so the backend compiles through NVRTC as for a real A100 and takes the tensor-core paths.
//
// Execution model: one launch at a time, synchronously (streams and events are bookkeeping). The blocks of a grid run
// one after another; the threads of a block are fibers on one OS thread, switched only at __syncthreads and at warp
// exchanges (shuffles, mma), so every data race the barriers are meant to prevent becomes a deterministic wrong
// value. Device memory is host memory, each allocation ending at a no-access page: a kernel reading or writing past
// the end of a buffer stops the process with a message naming the kernel, block and thread.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include "cuda_emu.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

// ---------------------------------------------------------------- kernel registry (filled by the generated files)
namespace {
struct KernelInfo
{
    std::string build;
    emu_invoker_t invoke;
    int maxThreads;                      // __launch_bounds__ (0: none)
    int maxDynamicShared = 48 * 1024;    // raised by cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)
};
std::map<std::string, KernelInfo>& registry() { static std::map<std::string, KernelInfo> r; return r; }
std::string duplicateError;
}

void emu_register(const char* build, const emu_kernel_entry* entries, int count)
{
    for (int i = 0; i < count; i++)
    {
        auto [it, fresh] = registry().emplace(entries[i].name, KernelInfo{build, entries[i].invoke, entries[i].maxThreads});
        // A storage-independent kernel is in both builds of its file (f32 and #bf16): either serves. The same name
        // in two different files would be ambiguous.
        std::string a = it->second.build.substr(0, it->second.build.find('#')), b = std::string(build).substr(0, std::string(build).find('#'));
        if (!fresh && a != b) duplicateError = std::string("kernel ") + entries[i].name + " defined by both " + it->second.build + " and " + build;
    }
}

// ---------------------------------------------------------------- fibers
// emu_switch(&from, to): saves the callee-saved registers, the SSE control word and the x87 control word on the
// current stack, stores the stack pointer in *from, and resumes the fiber whose stack pointer is `to`.
extern "C" void emu_switch(void** from, void* to);
asm(R"(
    .text
    .p2align 4
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");

emu_dim3 emu_threadIdx, emu_blockIdx, emu_blockDim, emu_gridDim;

namespace {
constexpr size_t StackBytes = 256 * 1024, Page = 4096;
constexpr int MaxThreads = 1024, SlotBytes = 64;

struct Fiber
{
    void* sp = nullptr;
    char* stack = nullptr;          // lowest usable byte (a no-access page lies below)
    int tid = 0;
    bool done = false;
    const unsigned long long* waitGen = nullptr;   // the barrier generation this fiber waits to change
    unsigned long long waitFor = 0;
};

struct Barrier { int arrived = 0; unsigned long long gen = 0; };

struct Warp
{
    Barrier bar;
    int present = 0, exited = 0;
    alignas(16) unsigned char slots[32][SlotBytes];
};

struct Launch
{
    std::string name;
    emu_invoker_t invoke = nullptr;
    void** params = nullptr;
    int threads = 0, live = 0;
    Barrier block;
    Warp warps[MaxThreads / 32];
    std::vector<unsigned char> dynamicShared;
    size_t dynamicBytes = 0;
    bool failed = false;
    std::string error;
};

Fiber fibers[MaxThreads];
Fiber* current = nullptr;
void* schedulerSp = nullptr;
Launch* launch = nullptr;
std::mutex launchGate;

std::string format(const char* fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

std::string where(int tid)
{
    return format("kernel %s, block (%u,%u,%u), thread %d", launch->name.c_str(), emu_blockIdx.x, emu_blockIdx.y,
        emu_blockIdx.z, tid);
}

void fail(const std::string& why)
{
    if (!launch->failed) { launch->failed = true; launch->error = why; }
}

void yield() { emu_switch(&current->sp, schedulerSp); }

void wait(Barrier& b)
{
    current->waitGen = &b.gen;
    current->waitFor = b.gen;
    while (b.gen == current->waitFor && !launch->failed) yield();
    current->waitGen = nullptr;
}

[[noreturn]] void fiberMain()
{
    launch->invoke(launch->params);
    Fiber* f = current;
    f->done = true;
    launch->live--;
    Warp& w = launch->warps[f->tid / 32];
    w.exited++;
    if (w.bar.arrived > 0)
        fail(where(f->tid) + " exited while other lanes of its warp wait in a shuffle (a full-mask shuffle needs all 32 lanes)");
    // __syncthreads counts the threads that have not exited (as the hardware does in practice).
    if (launch->block.arrived > 0 && launch->block.arrived == launch->live) { launch->block.arrived = 0; launch->block.gen++; }
    yield();
    std::abort();   // a finished fiber is never resumed
}

void startFiber(Fiber& f, int tid)
{
    if (!f.stack)
    {
        void* m = mmap(nullptr, StackBytes + Page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) { std::perror("cuda-emu: mmap(fiber stack)"); std::abort(); }
        mprotect(m, Page, PROT_NONE);
        f.stack = (char*)m + Page;
    }
    f.tid = tid;
    f.done = false;
    f.waitGen = nullptr;
    // The frame emu_switch pops: control words, r15…rbp, then "returns" into fiberMain with the stack as after a call.
    auto* top = (unsigned long long*)(f.stack + StackBytes);
    *--top = 0;                                   // fiberMain's (never used) return address
    *--top = (unsigned long long)&fiberMain;
    for (int i = 0; i < 6; i++) *--top = 0;       // rbp rbx r12 r13 r14 r15
    *--top = 0x037F00001F80ull;                   // mxcsr 0x1F80 (low 4 bytes), x87 control word 0x037F (next 2)
    f.sp = top;
}

// Which runnable thread resumes next (MT_CUDA_EMU_ORDER). "up" (the default) always resumes the lowest-numbered one,
// so warp 0 runs ahead to its next __syncthreads while the others have not started: a missing barrier between a
// shared-memory write and another warp's read (or between a read and the next overwrite) then yields wrong values.
// "down" runs the highest-numbered first (a race in the other direction); "round" is round robin, closest to the
// hardware's interleaving. Running the selftest under "up" and "down" exposes a missing barrier either way.
enum class Order { Up, Down, Round };
Order order = [] {
    const char* e = std::getenv("MT_CUDA_EMU_ORDER");
    std::string v = e ? e : "up";
    return v == "down" ? Order::Down : v == "round" ? Order::Round : Order::Up;
}();

// Runs every thread of the current block to completion.
void runBlock()
{
    Launch& L = *launch;
    int n = L.threads;
    L.live = n;
    L.block = Barrier{};
    for (int w = 0; w < (n + 31) / 32; w++)
    {
        L.warps[w].bar = Barrier{};
        L.warps[w].present = std::min(32, n - 32 * w);
        L.warps[w].exited = 0;
    }
    if (L.dynamicBytes) std::memset(L.dynamicShared.data(), 0xFF, L.dynamicBytes);
    for (int t = 0; t < n; t++) startFiber(fibers[t], t);
    auto runnable = [&](int t) { const Fiber& f = fibers[t]; return !f.done && !(f.waitGen && *f.waitGen == f.waitFor); };
    int done = 0, last = n - 1;
    while (done < n && !L.failed)
    {
        int pick = -1;
        if (order == Order::Up) { for (int t = 0; t < n && pick < 0; t++) if (runnable(t)) pick = t; }
        else if (order == Order::Down) { for (int t = n - 1; t >= 0 && pick < 0; t--) if (runnable(t)) pick = t; }
        else for (int i = 1; i <= n && pick < 0; i++) if (runnable((last + i) % n)) pick = (last + i) % n;
        if (pick < 0)
        {
            std::string who;
            for (int t = 0; t < n && who.empty(); t++)
                if (!fibers[t].done)
                    who = format("thread %d waits at %s", t, fibers[t].waitGen == &L.block.gen ? "__syncthreads" : "a warp shuffle");
            fail(where(-1) + ": deadlock, " + who + " that other threads of the block never reach");
            break;
        }
        Fiber& f = fibers[pick];
        current = &f;
        emu_threadIdx = {(unsigned)pick % emu_blockDim.x, (unsigned)pick / emu_blockDim.x % emu_blockDim.y,
                         (unsigned)pick / (emu_blockDim.x * emu_blockDim.y)};
        emu_switch(&schedulerSp, f.sp);
        last = pick;
        if (f.done) done++;
    }
    current = nullptr;
}

// ---------------------------------------------------------------- guard-paged device memory
struct Mapping { void* base; size_t length; size_t bytes; };
std::map<unsigned long long, Mapping> allocations;
std::mutex memGate;
size_t allocatedBytes = 0;
constexpr size_t TotalBytes = 16ull << 30;

// Out-of-bounds access in a kernel: a no-access page. Report where, then stop the process.
struct sigaction previousSegv, previousBus;
void onFault(int sig, siginfo_t* info, void* ctx)
{
    if (launch && current)
    {
        std::string msg = "cuda-emu: " + where(current->tid) +
            format(": invalid address %p (past the end of a device buffer, or not device memory)\n", info->si_addr);
        (void)!write(2, msg.data(), msg.size());
        _exit(139);
    }
    struct sigaction& prev = sig == SIGSEGV ? previousSegv : previousBus;
    if (prev.sa_flags & SA_SIGINFO) prev.sa_sigaction(sig, info, ctx);
    else if (prev.sa_handler != SIG_IGN && prev.sa_handler != SIG_DFL) prev.sa_handler(sig);
    else { signal(sig, SIG_DFL); raise(sig); }
}
} // namespace

void* emu_dynamic_shared() { return launch->dynamicShared.data(); }

int emu_lane() { return current->tid & 31; }

void emu_syncthreads()
{
    Barrier& b = launch->block;
    if (++b.arrived == launch->live) { b.arrived = 0; b.gen++; return; }
    wait(b);
}

void emu_warp_exchange(const void* mine, void* all32, int bytes)
{
    int tid = current->tid, lane = tid & 31;
    Warp& w = launch->warps[tid / 32];
    if (w.exited > 0) fail(where(tid) + ": warp shuffle after other lanes of the warp exited");
    std::memcpy(w.slots[lane], mine, bytes);
    if (++w.bar.arrived == w.present - w.exited) { w.bar.arrived = 0; w.bar.gen++; }
    else wait(w.bar);
    for (int l = 0; l < w.present; l++) std::memcpy((unsigned char*)all32 + l * bytes, w.slots[l], bytes);
    // A second barrier, so no lane overwrites its slot with the next exchange before every lane has read this one.
    if (++w.bar.arrived == w.present - w.exited) { w.bar.arrived = 0; w.bar.gen++; }
    else wait(w.bar);
}

// ---------------------------------------------------------------- the driver API
namespace {
enum : int { Success = 0, InvalidValue = 1, OutOfMemory = 2, NotFound = 500, LaunchFailed = 719, Unknown = 999 };
std::string lastLaunchError;
struct Event { std::chrono::steady_clock::time_point t; };
int dummyContext, dummyStream, dummyModule;
}

EXPORT int cuInit(unsigned) { return duplicateError.empty() ? Success : (std::fprintf(stderr, "cuda-emu: %s\n", duplicateError.c_str()), Unknown); }
EXPORT int cuDriverGetVersion(int* v) { *v = 12000; return Success; }
EXPORT int cuDeviceGetCount(int* n) { *n = 1; return Success; }
EXPORT int cuDeviceGet(int* d, int ordinal) { if (ordinal != 0) return InvalidValue; *d = 0; return Success; }
EXPORT int cuDeviceGetName(char* name, int len, int) { std::snprintf(name, len, "MiniTransformer CPU emulator (sm_80)"); return Success; }
EXPORT int cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = TotalBytes; return Success; }
EXPORT int cuDeviceGetAttribute(int* v, int attribute, int)
{
    switch (attribute)
    {
        case 1: *v = 1024; break;                  // max threads per block
        case 8: *v = 48 * 1024; break;             // shared memory per block
        case 10: *v = 32; break;                   // warp size
        case 16: *v = 4; break;                    // multiprocessors
        case 38: *v = 40 << 20; break;             // L2 bytes
        case 75: *v = 8; break;                    // compute capability 8.0
        case 76: *v = 0; break;
        case 97: *v = 163 * 1024; break;           // opt-in shared memory per block
        default: *v = 0; break;
    }
    return Success;
}
EXPORT int cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = &dummyContext; return Success; }
EXPORT int cuDevicePrimaryCtxRelease_v2(int) { return Success; }
EXPORT int cuCtxSetCurrent(void*) { return Success; }
EXPORT int cuCtxSynchronize() { return Success; }

EXPORT int cuMemGetInfo_v2(size_t* free, size_t* total)
{
    std::lock_guard<std::mutex> g(memGate);
    *total = TotalBytes;
    *free = TotalBytes - std::min(allocatedBytes, TotalBytes);
    return Success;
}

EXPORT int cuMemAlloc_v2(unsigned long long* dptr, size_t bytes)
{
    size_t size = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
    size_t pages = (size + Page - 1) / Page;
    void* m = mmap(nullptr, (pages + 1) * Page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return OutOfMemory;
    mprotect((char*)m + pages * Page, Page, PROT_NONE);
    char* p = (char*)m + pages * Page - size;      // 256-aligned, ending at the no-access page
    std::memset(p, 0xFF, size);                     // fresh device memory reads as NaN, not as a convenient 0
    std::lock_guard<std::mutex> g(memGate);
    allocations[(unsigned long long)p] = {m, (pages + 1) * Page, size};
    allocatedBytes += size;
    *dptr = (unsigned long long)p;
    return Success;
}

EXPORT int cuMemFree_v2(unsigned long long dptr)
{
    std::lock_guard<std::mutex> g(memGate);
    auto it = allocations.find(dptr);
    if (it == allocations.end()) return InvalidValue;
    allocatedBytes -= it->second.bytes;
    munmap(it->second.base, it->second.length);
    allocations.erase(it);
    return Success;
}

EXPORT int cuMemcpyHtoD_v2(unsigned long long dst, const void* src, size_t n) { std::memcpy((void*)dst, src, n); return Success; }
EXPORT int cuMemcpyDtoH_v2(void* dst, unsigned long long src, size_t n) { std::memcpy(dst, (void*)src, n); return Success; }
EXPORT int cuMemcpyDtoDAsync_v2(unsigned long long dst, unsigned long long src, size_t n, void*) { std::memmove((void*)dst, (void*)src, n); return Success; }
EXPORT int cuMemcpyHtoDAsync_v2(unsigned long long dst, const void* src, size_t n, void*) { std::memcpy((void*)dst, src, n); return Success; }
EXPORT int cuMemcpyDtoHAsync_v2(void* dst, unsigned long long src, size_t n, void*) { std::memcpy(dst, (void*)src, n); return Success; }
EXPORT int cuMemsetD8Async(unsigned long long dst, unsigned char v, size_t n, void*) { std::memset((void*)dst, v, n); return Success; }
EXPORT int cuMemsetD32Async(unsigned long long dst, unsigned v, size_t n, void*)
{
    auto* p = (unsigned*)dst;
    for (size_t i = 0; i < n; i++) p[i] = v;
    return Success;
}

EXPORT int cuStreamCreate(void** s, unsigned) { *s = &dummyStream; return Success; }
EXPORT int cuStreamDestroy_v2(void*) { return Success; }
EXPORT int cuStreamSynchronize(void*) { return Success; }
EXPORT int cuEventCreate(void** e, unsigned) { *e = new Event{}; return Success; }
EXPORT int cuEventRecord(void* e, void*) { ((Event*)e)->t = std::chrono::steady_clock::now(); return Success; }
EXPORT int cuEventSynchronize(void*) { return Success; }
EXPORT int cuEventElapsedTime(float* ms, void* a, void* b)
{
    *ms = std::chrono::duration<float, std::milli>(((Event*)b)->t - ((Event*)a)->t).count();
    return Success;
}
EXPORT int cuEventDestroy_v2(void* e) { delete (Event*)e; return Success; }

// Modules: the image (PTX or CUBIN from NVRTC) is not run; a function is found by name among the kernels build.sh
// compiled (names are unique across kernel files and their bf16 builds).
EXPORT int cuModuleLoadData(void** module, const void*) { *module = &dummyModule; return Success; }
EXPORT int cuModuleUnload(void*) { return Success; }
EXPORT int cuModuleGetFunction(void** f, void*, const char* name)
{
    auto it = registry().find(name);
    if (it == registry().end()) return NotFound;
    *f = &*it;
    return Success;
}
// The emulated device is an sm_80 part: at most 163 KB of dynamic shared memory per block, after opting in.
constexpr int OptInSharedBytes = 163 * 1024;
EXPORT int cuFuncSetAttribute(void* f, int attribute, int value)
{
    auto& info = ((std::pair<const std::string, KernelInfo>*)f)->second;
    if (attribute == 8)   // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    {
        if (value < 0 || value > OptInSharedBytes) return InvalidValue;
        info.maxDynamicShared = value;
    }
    return Success;
}

EXPORT int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
    unsigned sharedBytes, void*, void** params, void**)
{
    auto& entry = *(std::pair<const std::string, KernelInfo>*)f;
    unsigned threads = bx * by * bz;
    // The launch checks a device makes: block size (and the kernel's own __launch_bounds__), grid limits, dynamic
    // shared memory within what the function was allowed.
    std::string bad;
    if (threads == 0 || threads > MaxThreads) bad = format("%u threads per block (1 to %d)", threads, MaxThreads);
    else if (entry.second.maxThreads > 0 && (int)threads > entry.second.maxThreads)
        bad = format("%u threads per block, over its __launch_bounds__(%d)", threads, entry.second.maxThreads);
    else if (gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535) bad = format("grid (%u,%u,%u)", gx, gy, gz);
    else if ((int)sharedBytes > entry.second.maxDynamicShared)
        bad = format("%u bytes of dynamic shared memory, over the function's limit of %d (cuFuncSetAttribute raises it up to %d)",
            sharedBytes, entry.second.maxDynamicShared, OptInSharedBytes);
    if (!bad.empty())
    {
        lastLaunchError = "launch of " + entry.first + " refused: " + bad;
        std::fprintf(stderr, "cuda-emu: %s\n", lastLaunchError.c_str());
        return LaunchFailed;
    }
    std::lock_guard<std::mutex> g(launchGate);
    static Launch L;   // large (warp slots): one, reused
    L.name = entry.first;
    L.invoke = entry.second.invoke;
    L.params = params;
    L.threads = (int)threads;
    L.failed = false;
    L.error.clear();
    L.dynamicBytes = sharedBytes;
    if (L.dynamicShared.size() < sharedBytes) L.dynamicShared.resize(sharedBytes);
    launch = &L;
    emu_blockDim = {bx, by, bz};
    emu_gridDim = {gx, gy, gz};
    struct sigaction act {};
    act.sa_sigaction = onFault;
    act.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &act, &previousSegv);
    sigaction(SIGBUS, &act, &previousBus);
    for (unsigned z = 0; z < gz && !L.failed; z++)
        for (unsigned y = 0; y < gy && !L.failed; y++)
            for (unsigned x = 0; x < gx && !L.failed; x++)
            {
                emu_blockIdx = {x, y, z};
                runBlock();
            }
    sigaction(SIGSEGV, &previousSegv, nullptr);
    sigaction(SIGBUS, &previousBus, nullptr);
    launch = nullptr;
    if (L.failed)
    {
        lastLaunchError = L.error;
        std::fprintf(stderr, "cuda-emu: %s\n", L.error.c_str());
        return LaunchFailed;
    }
    return Success;
}

EXPORT int cuGetErrorName(int error, const char** name)
{
    switch (error)
    {
        case Success: *name = "CUDA_SUCCESS"; break;
        case InvalidValue: *name = "CUDA_ERROR_INVALID_VALUE"; break;
        case OutOfMemory: *name = "CUDA_ERROR_OUT_OF_MEMORY"; break;
        case NotFound: *name = "CUDA_ERROR_NOT_FOUND"; break;
        case LaunchFailed: *name = "CUDA_ERROR_LAUNCH_FAILED"; break;
        default: *name = "CUDA_ERROR_UNKNOWN"; break;
    }
    return Success;
}

EXPORT int cuGetErrorString(int error, const char** text)
{
    switch (error)
    {
        case NotFound: *text = "no kernel of that name was compiled into the emulator (rerun tools/cuda-emu/build.sh)"; break;
        case LaunchFailed: *text = lastLaunchError.c_str(); break;
        case InvalidValue: *text = "invalid argument"; break;
        case OutOfMemory: *text = "out of memory"; break;
        default: *text = "error in the CPU emulator"; break;
    }
    return Success;
}
