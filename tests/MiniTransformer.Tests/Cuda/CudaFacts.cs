using MiniTransformer.Backends.Cuda;

namespace MiniTransformer.Tests.Cuda;

/// <summary>A test that needs NVRTC (no GPU): reported skipped, with the reason, where NVRTC is not installed.</summary>
public sealed class NvrtcTheoryAttribute : TheoryAttribute
{
    public NvrtcTheoryAttribute()
    {
        NativeLibraries.EnsureResolver();
        if (NativeLibraries.NvrtcMissingReason is { } why) Skip = why;
    }
}

/// <summary>A test that needs a CUDA GPU: reported skipped, with the reason, where there is none.</summary>
public sealed class GpuFactAttribute : FactAttribute
{
    public GpuFactAttribute()
    {
        if (CudaDevice.Unavailable() is { } why) Skip = why;
    }
}

/// <summary>A theory that needs a CUDA GPU: reported skipped, with the reason, where there is none.</summary>
public sealed class GpuTheoryAttribute : TheoryAttribute
{
    public GpuTheoryAttribute()
    {
        if (CudaDevice.Unavailable() is { } why) Skip = why;
    }
}
