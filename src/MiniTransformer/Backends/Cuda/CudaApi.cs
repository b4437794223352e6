using System.Runtime.InteropServices;
using System.Runtime.InteropServices.Marshalling;

namespace MiniTransformer.Backends.Cuda;

/// <summary>
/// The thin binding over the CUDA driver API (<c>libcuda.so.1</c>): only the calls this engine uses. Raw entry points
/// return the CUresult; <see cref="Cu.Check"/> turns a non-zero one into a <see cref="CudaException"/> naming the call.
/// </summary>
public static unsafe partial class Cu
{
    const string L = NativeLibraries.Cuda;

    public const int AttrMultiprocessorCount = 16;
    public const int AttrL2CacheSize = 38;
    public const int AttrComputeCapabilityMajor = 75;
    public const int AttrComputeCapabilityMinor = 76;
    public const int AttrMaxSharedMemoryPerBlockOptin = 97;
    public const int FuncAttrMaxDynamicSharedSizeBytes = 8;
    public const int ErrorNoDevice = 100;

    [LibraryImport(L)] public static partial int cuInit(uint flags);
    [LibraryImport(L)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(L)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(L)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(L)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(L)] public static partial int cuDeviceGetName(byte* name, int len, int device);
    [LibraryImport(L, EntryPoint = "cuDeviceTotalMem_v2")] public static partial int cuDeviceTotalMem(out nuint bytes, int device);
    [LibraryImport(L)] public static partial int cuDevicePrimaryCtxRetain(out IntPtr ctx, int device);
    [LibraryImport(L, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] public static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(L)] public static partial int cuCtxSetCurrent(IntPtr ctx);
    [LibraryImport(L)] public static partial int cuCtxSynchronize();
    [LibraryImport(L, EntryPoint = "cuMemGetInfo_v2")] public static partial int cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(L, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(out ulong dptr, nuint bytes);
    [LibraryImport(L, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(ulong dptr);
    [LibraryImport(L, EntryPoint = "cuMemcpyHtoD_v2")] public static partial int cuMemcpyHtoD(ulong dst, void* src, nuint bytes);
    [LibraryImport(L, EntryPoint = "cuMemcpyDtoH_v2")] public static partial int cuMemcpyDtoH(void* dst, ulong src, nuint bytes);
    [LibraryImport(L, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(L, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, IntPtr stream);
    [LibraryImport(L, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(L)] public static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, IntPtr stream);
    [LibraryImport(L)] public static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, IntPtr stream);
    [LibraryImport(L)] public static partial int cuStreamCreate(out IntPtr stream, uint flags);
    [LibraryImport(L, EntryPoint = "cuStreamDestroy_v2")] public static partial int cuStreamDestroy(IntPtr stream);
    [LibraryImport(L)] public static partial int cuStreamSynchronize(IntPtr stream);
    [LibraryImport(L)] public static partial int cuEventCreate(out IntPtr ev, uint flags);
    [LibraryImport(L)] public static partial int cuEventRecord(IntPtr ev, IntPtr stream);
    [LibraryImport(L)] public static partial int cuEventSynchronize(IntPtr ev);
    [LibraryImport(L)] public static partial int cuEventElapsedTime(out float ms, IntPtr start, IntPtr end);
    [LibraryImport(L, EntryPoint = "cuEventDestroy_v2")] public static partial int cuEventDestroy(IntPtr ev);
    [LibraryImport(L)] public static partial int cuModuleLoadData(out IntPtr module, void* image);
    [LibraryImport(L)] public static partial int cuModuleUnload(IntPtr module);
    [LibraryImport(L, StringMarshalling = StringMarshalling.Utf8)] public static partial int cuModuleGetFunction(out IntPtr func, IntPtr module, string name);
    [LibraryImport(L)] public static partial int cuFuncSetAttribute(IntPtr func, int attribute, int value);
    [LibraryImport(L)] public static partial int cuLaunchKernel(IntPtr f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz,
        uint sharedBytes, IntPtr stream, void** args, void** extra);
    [LibraryImport(L)] public static partial int cuGetErrorName(int error, out byte* name);
    [LibraryImport(L)] public static partial int cuGetErrorString(int error, out byte* text);

    /// <summary>"CUDA_ERROR_X: text" for a CUresult.</summary>
    public static string ErrorText(int r)
    {
        string name = $"CUresult {r}", text = "";
        try
        {
            if (cuGetErrorName(r, out byte* n) == 0 && n != null) name = Marshal.PtrToStringUTF8((IntPtr)n) ?? name;
            if (cuGetErrorString(r, out byte* s) == 0 && s != null) text = Marshal.PtrToStringUTF8((IntPtr)s) ?? "";
        }
        catch (Exception) { }
        return text.Length > 0 ? $"{name}: {text}" : name;
    }

    /// <summary>Throws a <see cref="CudaException"/> naming <paramref name="call"/> and the error unless r == CUDA_SUCCESS.</summary>
    public static void Check(int r, string call)
    {
        if (r != 0) throw new CudaException($"{call} failed: {ErrorText(r)}");
    }
}

/// <summary>The thin binding over NVRTC (run-time compilation of CUDA C to PTX or CUBIN).</summary>
public static unsafe partial class Nvrtc
{
    const string L = NativeLibraries.Nvrtc;

    [LibraryImport(L)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(L)] public static partial int nvrtcGetNumSupportedArchs(out int n);
    [LibraryImport(L)] public static partial int nvrtcGetSupportedArchs(int* archs);
    [LibraryImport(L)] public static partial int nvrtcCreateProgram(out IntPtr prog, byte* src, byte* name, int numHeaders, byte** headers, byte** includeNames);
    [LibraryImport(L)] public static partial int nvrtcDestroyProgram(ref IntPtr prog);
    [LibraryImport(L)] public static partial int nvrtcCompileProgram(IntPtr prog, int numOptions, byte** options);
    [LibraryImport(L)] public static partial int nvrtcGetProgramLogSize(IntPtr prog, out nuint size);
    [LibraryImport(L)] public static partial int nvrtcGetProgramLog(IntPtr prog, byte* log);
    [LibraryImport(L)] public static partial int nvrtcGetPTXSize(IntPtr prog, out nuint size);
    [LibraryImport(L)] public static partial int nvrtcGetPTX(IntPtr prog, byte* ptx);
    [LibraryImport(L)] public static partial int nvrtcGetCUBINSize(IntPtr prog, out nuint size);
    [LibraryImport(L)] public static partial int nvrtcGetCUBIN(IntPtr prog, byte* cubin);
    [LibraryImport(L)] public static partial byte* nvrtcGetErrorString(int result);

    public static string ErrorText(int r)
    {
        try
        {
            byte* s = nvrtcGetErrorString(r);
            if (s != null) return Marshal.PtrToStringUTF8((IntPtr)s) ?? $"nvrtcResult {r}";
        }
        catch (Exception) { }
        return $"nvrtcResult {r}";
    }

    public static void Check(int r, string call)
    {
        if (r != 0) throw new CudaException($"{call} failed: {ErrorText(r)}");
    }
}
