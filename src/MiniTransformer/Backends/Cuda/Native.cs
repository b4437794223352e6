using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MiniTransformer.Backends.Cuda;

/// <summary>
/// Finds the two native libraries the CUDA path needs: the driver (<c>libcuda.so.1</c>) and NVRTC (probed newest
/// first: <c>libnvrtc.so.13</c>, <c>.12</c>, <c>.11.2</c>, then <c>libnvrtc.so</c>; <c>MT_NVRTC</c> names a file to use
/// instead). The [LibraryImport] declarations name the logical libraries "cuda" and "nvrtc"; a resolver maps them.
/// </summary>
public static class NativeLibraries
{
    public const string Cuda = "mt-cuda";
    public const string Nvrtc = "mt-nvrtc";

    static readonly string[] NvrtcNames = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"];
    static readonly Lazy<(IntPtr Handle, string? Name, string Tried)> nvrtc = new(ProbeNvrtc);
    static readonly Lazy<(IntPtr Handle, string Tried)> cuda = new(ProbeCuda);
    static int installed;

    /// <summary>Installs the resolver once (idempotent). Called by every entry point before the first native call.</summary>
    public static void EnsureResolver()
    {
        if (Interlocked.Exchange(ref installed, 1) == 1) return;
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
    }

    static IntPtr Resolve(string name, Assembly asm, DllImportSearchPath? path) => name switch
    {
        Cuda => cuda.Value.Handle,
        Nvrtc => nvrtc.Value.Handle,
        _ => IntPtr.Zero,
    };

    static (IntPtr, string?, string) ProbeNvrtc()
    {
        var tried = new List<string>();
        string? env = Environment.GetEnvironmentVariable("MT_NVRTC");
        IEnumerable<string> names = string.IsNullOrEmpty(env) ? NvrtcNames : [env, .. NvrtcNames];
        foreach (string n in names)
        {
            tried.Add(n);
            if (NativeLibrary.TryLoad(n, out var h)) return (h, n, string.Join(", ", tried));
        }
        return (IntPtr.Zero, null, string.Join(", ", tried));
    }

    /// <summary><c>MT_CUDA_DRIVER</c> names a driver library to load instead of libcuda.so.1: the CPU emulator built by
    /// <c>tools/cuda-emu/build.sh</c>, which runs the kernels on the host so the CUDA path can be checked without a GPU.</summary>
    static (IntPtr, string) ProbeCuda()
    {
        string name = Environment.GetEnvironmentVariable("MT_CUDA_DRIVER") is { Length: > 0 } env ? env : "libcuda.so.1";
        return NativeLibrary.TryLoad(name, out var h) ? (h, name) : (IntPtr.Zero, name);
    }

    public static bool NvrtcAvailable => nvrtc.Value.Handle != IntPtr.Zero;
    public static string? NvrtcLibrary => nvrtc.Value.Name;
    public static bool CudaDriverAvailable => cuda.Value.Handle != IntPtr.Zero;

    /// <summary>Why NVRTC cannot be used, in one line (null when it can).</summary>
    public static string? NvrtcMissingReason => NvrtcAvailable ? null
        : $"NVRTC not found (tried {nvrtc.Value.Tried}; install libnvrtc, e.g. Debian non-free libnvrtc11.2 + libnvrtc-builtins11.8, or set MT_NVRTC=/path/libnvrtc.so.N)";

    public static string? CudaMissingReason => CudaDriverAvailable ? null
        : cuda.Value.Tried == "libcuda.so.1" ? "no CUDA driver (libcuda.so.1 not found: no NVIDIA GPU driver on this machine)"
        : $"MT_CUDA_DRIVER={cuda.Value.Tried} could not be loaded";
}

/// <summary>A CUDA driver or NVRTC call that returned an error: names the call and the error.</summary>
public sealed class CudaException(string message) : Exception(message);
