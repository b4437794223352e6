using System.Runtime.InteropServices;

namespace MiniTransformer.Backends.Cuda;

/// <summary>Device memory: a raw allocation of <see cref="Bytes"/> bytes. Freed by Dispose (or the finalizer).</summary>
public sealed class DeviceBuffer : IDisposable
{
    internal DeviceBuffer(CudaDevice dev, ulong ptr, long bytes) { Device = dev; Ptr = ptr; Bytes = bytes; }
    public CudaDevice Device { get; }
    public ulong Ptr { get; private set; }
    public long Bytes { get; }

    public void Dispose()
    {
        if (Ptr != 0 && !Device.Disposed) { Device.MakeCurrent(); Cu.cuMemFree(Ptr); }
        Ptr = 0;
        GC.SuppressFinalize(this);
    }

    ~DeviceBuffer() { if (Ptr != 0 && !Device.Disposed) { try { Device.MakeCurrent(); Cu.cuMemFree(Ptr); } catch (Exception) { } } }
}

/// <summary>
/// One CUDA device: its primary context, one stream, and the kernels compiled for its own architecture
/// (sm_XY from its compute capability) and loaded from CUBIN. Kernel arguments are passed as a list of unmanaged values
/// (device pointers as <c>ulong</c>).
/// </summary>
public sealed unsafe class CudaDevice : IDisposable
{
    static readonly Lock gate = new();
    static CudaDevice? shared;
    static string? unavailable;
    static bool probed;

    readonly IntPtr ctx;
    readonly Dictionary<string, IntPtr> modules = new();
    readonly Dictionary<string, IntPtr> functions = new();

    public int Ordinal { get; }
    public string Name { get; }
    public int Major { get; }
    public int Minor { get; }
    public int Multiprocessors { get; }
    public long TotalMemory { get; }
    public int DriverVersion { get; }
    public string Arch => $"sm_{Major}{Minor}";
    public IntPtr Stream { get; }
    public bool Disposed { get; private set; }

    /// <summary>
    /// Why no CUDA device can be used, as one line (null when one can): no driver library, cuInit failing, or no device.
    /// Probed once per process.
    /// </summary>
    public static string? Unavailable()
    {
        lock (gate)
        {
            if (probed) return unavailable;
            probed = true;
            NativeLibraries.EnsureResolver();
            if (NativeLibraries.CudaMissingReason is { } why) return unavailable = why;
            int r = Cu.cuInit(0);
            if (r == Cu.ErrorNoDevice) return unavailable = "no CUDA device (cuInit: CUDA_ERROR_NO_DEVICE)";
            if (r != 0) return unavailable = $"CUDA driver present but cuInit failed: {Cu.ErrorText(r)}";
            r = Cu.cuDeviceGetCount(out int n);
            if (r != 0) return unavailable = $"cuDeviceGetCount failed: {Cu.ErrorText(r)}";
            if (n == 0) return unavailable = "no CUDA device (the driver reports 0 devices)";
            return unavailable = null;
        }
    }

    /// <summary>Device 0, opened once per process. Throws an <see cref="InputException"/> (one line) without a GPU.</summary>
    public static CudaDevice Default
    {
        get
        {
            lock (gate)
            {
                if (shared is { Disposed: false }) return shared;
                if (Unavailable() is { } why) throw new InputException($"--device cuda: {why}");
                return shared = new CudaDevice(0);
            }
        }
    }

    CudaDevice(int ordinal)
    {
        Ordinal = ordinal;
        Cu.Check(Cu.cuDeviceGet(out int dev, ordinal), "cuDeviceGet");
        Cu.Check(Cu.cuDeviceGetAttribute(out int major, Cu.AttrComputeCapabilityMajor, dev), "cuDeviceGetAttribute(major)");
        Cu.Check(Cu.cuDeviceGetAttribute(out int minor, Cu.AttrComputeCapabilityMinor, dev), "cuDeviceGetAttribute(minor)");
        Cu.Check(Cu.cuDeviceGetAttribute(out int sms, Cu.AttrMultiprocessorCount, dev), "cuDeviceGetAttribute(multiprocessors)");
        Cu.Check(Cu.cuDeviceTotalMem(out nuint total, dev), "cuDeviceTotalMem");
        Cu.Check(Cu.cuDriverGetVersion(out int drv), "cuDriverGetVersion");
        byte* name = stackalloc byte[256];
        Cu.Check(Cu.cuDeviceGetName(name, 256, dev), "cuDeviceGetName");
        Name = Marshal.PtrToStringUTF8((IntPtr)name) ?? "?";
        (Major, Minor, Multiprocessors, TotalMemory, DriverVersion) = (major, minor, sms, (long)total, drv);
        Cu.Check(Cu.cuDevicePrimaryCtxRetain(out ctx, dev), "cuDevicePrimaryCtxRetain");
        MakeCurrent();
        Cu.Check(Cu.cuStreamCreate(out IntPtr stream, 1 /* CU_STREAM_NON_BLOCKING */), "cuStreamCreate");
        Stream = stream;
    }

    public override string ToString() =>
        $"{Name} ({Arch}, {Multiprocessors} SMs, {TotalMemory / (1L << 30)} GiB, driver {DriverVersion / 1000}.{DriverVersion % 1000 / 10})";

    public void MakeCurrent() => Cu.Check(Cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");

    // ------------------------------------------------------------------ memory

    public DeviceBuffer Alloc(long bytes)
    {
        MakeCurrent();
        Cu.Check(Cu.cuMemAlloc(out ulong p, (nuint)Math.Max(bytes, 4)), $"cuMemAlloc({bytes} bytes)");
        return new DeviceBuffer(this, p, bytes);
    }

    public void Upload<T>(DeviceBuffer dst, ReadOnlySpan<T> src, long dstOffsetBytes = 0) where T : unmanaged
    {
        long bytes = (long)src.Length * sizeof(T);
        if (bytes == 0) return;
        if (dstOffsetBytes + bytes > dst.Bytes) throw new ArgumentException("upload past the end of a device buffer");
        fixed (T* p = src)
        {
            Cu.Check(Cu.cuMemcpyHtoDAsync(dst.Ptr + (ulong)dstOffsetBytes, p, (nuint)bytes, Stream), "cuMemcpyHtoDAsync");
            Synchronize();   // the host span may move or change once we return
        }
    }

    public void Download<T>(Span<T> dst, DeviceBuffer src, long srcOffsetBytes = 0) where T : unmanaged
    {
        long bytes = (long)dst.Length * sizeof(T);
        if (bytes == 0) return;
        if (srcOffsetBytes + bytes > src.Bytes) throw new ArgumentException("download past the end of a device buffer");
        fixed (T* p = dst)
        {
            Cu.Check(Cu.cuMemcpyDtoHAsync(p, src.Ptr + (ulong)srcOffsetBytes, (nuint)bytes, Stream), "cuMemcpyDtoHAsync");
            Synchronize();
        }
    }

    public void Copy(DeviceBuffer dst, DeviceBuffer src, long bytes) =>
        Cu.Check(Cu.cuMemcpyDtoDAsync(dst.Ptr, src.Ptr, (nuint)bytes, Stream), "cuMemcpyDtoDAsync");

    public void Zero(DeviceBuffer dst, long bytes) =>
        Cu.Check(Cu.cuMemsetD8Async(dst.Ptr, 0, (nuint)bytes, Stream), "cuMemsetD8Async");

    public void Fill32(DeviceBuffer dst, uint value, long count) =>
        Cu.Check(Cu.cuMemsetD32Async(dst.Ptr, value, (nuint)count, Stream), "cuMemsetD32Async");

    public void Synchronize() => Cu.Check(Cu.cuStreamSynchronize(Stream), "cuStreamSynchronize");

    // ------------------------------------------------------------------ kernels

    /// <summary>The kernel <paramref name="name"/> from <paramref name="file"/>, compiled (or taken from the cache) and loaded.</summary>
    public IntPtr Function(string file, string name)
    {
        string key = file + ":" + name;
        lock (functions)
        {
            if (functions.TryGetValue(key, out var f)) return f;
            if (!modules.TryGetValue(file, out var mod))
            {
                var k = KernelCompiler.CompileVariant(file, Arch);   // "x.cu#bf16": the bf16-storage build of x.cu
                MakeCurrent();
                byte[] image = k.Cubin ?? [.. k.Ptx, 0];
                fixed (byte* p = image) Cu.Check(Cu.cuModuleLoadData(out mod, p), $"cuModuleLoadData({file}, {Arch})");
                modules[file] = mod;
            }
            Cu.Check(Cu.cuModuleGetFunction(out f, mod, name), $"cuModuleGetFunction({file}: {name})");
            functions[key] = f;
            return f;
        }
    }

    public void SetMaxDynamicShared(IntPtr f, int bytes) =>
        Cu.Check(Cu.cuFuncSetAttribute(f, Cu.FuncAttrMaxDynamicSharedSizeBytes, bytes), "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");

    /// <summary>Launches <paramref name="name"/> on the device's stream. Arguments: ulong (pointers), int, long, float.</summary>
    public void Launch(string file, string name, (uint X, uint Y, uint Z) grid, uint block, uint shared, params object?[] args)
    {
        IntPtr f = Function(file, name);
        if (shared > 48 * 1024) SetMaxDynamicShared(f, (int)shared);
        // Each argument in its own 8-byte slot; kernel params point at the slots.
        ulong* slots = stackalloc ulong[args.Length];
        void** ptrs = stackalloc void*[args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case ulong u: slots[i] = u; break;
                case int v: *(int*)&slots[i] = v; break;
                case long v: *(long*)&slots[i] = v; break;
                case float v: *(float*)&slots[i] = v; break;
                case DeviceBuffer d: slots[i] = d.Ptr; break;
                case null: slots[i] = 0; break;
                default: throw new ArgumentException($"kernel argument {i} of {name}: unsupported type {args[i]!.GetType().Name}");
            }
            ptrs[i] = &slots[i];
        }
        if (grid.X == 0 || grid.Y == 0 || grid.Z == 0) return;
        Cu.Check(Cu.cuLaunchKernel(f, grid.X, grid.Y, grid.Z, block, 1, 1, shared, Stream, ptrs, null), $"cuLaunchKernel({name})");
    }

    public static uint Blocks(long n, int block) => (uint)((n + block - 1) / block);

    // ------------------------------------------------------------------ events (timing)

    /// <summary>Milliseconds of device time taken by <paramref name="work"/>, measured with events on the stream.</summary>
    public float Time(Action work)
    {
        Cu.Check(Cu.cuEventCreate(out IntPtr a, 0), "cuEventCreate");
        Cu.Check(Cu.cuEventCreate(out IntPtr b, 0), "cuEventCreate");
        try
        {
            Cu.Check(Cu.cuEventRecord(a, Stream), "cuEventRecord");
            work();
            Cu.Check(Cu.cuEventRecord(b, Stream), "cuEventRecord");
            Cu.Check(Cu.cuEventSynchronize(b), "cuEventSynchronize");
            Cu.Check(Cu.cuEventElapsedTime(out float ms, a, b), "cuEventElapsedTime");
            return ms;
        }
        finally { Cu.cuEventDestroy(a); Cu.cuEventDestroy(b); }
    }

    public void Dispose()
    {
        if (Disposed) return;
        try
        {
            MakeCurrent();
            foreach (var m in modules.Values) Cu.cuModuleUnload(m);
            Cu.cuStreamDestroy(Stream);
            Cu.cuDevicePrimaryCtxRelease(Ordinal);
        }
        finally { Disposed = true; }
    }
}
