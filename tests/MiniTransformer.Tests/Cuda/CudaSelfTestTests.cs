using MiniTransformer.Backends.Cpu;
using MiniTransformer.Backends.Cuda;
using Xunit.Abstractions;

namespace MiniTransformer.Tests.Cuda;

/// <summary>
/// The CUDA op tests: every op, forward and backward, on the GPU in float32 against the CPU in float64
/// (<see cref="CudaSelfTest"/>, also run by <c>mt kernels selftest</c> on the GPU machine). Skipped without a GPU. The
/// harness itself is checked here on any machine by running it with the CPU float32 backend as the backend under test.
/// </summary>
public class CudaSelfTestTests(ITestOutputHelper output)
{
    public static TheoryData<string> CaseNames() => new(CudaSelfTest.Cases().Select(c => $"{c.Op} {c.Name}"));

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void HarnessPassesWithCpuFloat32(string name)
    {
        var r = CudaSelfTest.Run(CpuBackend<float>.Instance, n => n == name).Single();
        output.WriteLine($"{r.Op} {r.Case}: {r.Error:E2} (worst {r.Worst})");
        Assert.True(r.Passed, $"{name}: relative error {r.Error:E2} > {r.Tolerance:E0} in {r.Worst}");
    }

    [GpuTheory]
    [MemberData(nameof(CaseNames))]
    public void CudaMatchesCpuFloat64(string name)
    {
        using var be = new CudaBackend();
        var r = CudaSelfTest.Run(be, n => n == name).Single();
        output.WriteLine($"{be.Name} {r.Op} {r.Case}: {r.Error:E2} (worst {r.Worst})");
        Assert.True(r.Passed, $"{name}: relative error {r.Error:E2} > {r.Tolerance:E0} in {r.Worst}");
    }

    [Fact]
    public void WithoutAGpuTheDeviceSaysSoInOneLine()
    {
        if (CudaDevice.Unavailable() is null) return;   // a GPU is here: nothing to check
        var e = Assert.Throws<MiniTransformer.InputException>(() => CudaDevice.Default);
        Assert.StartsWith("--device cuda: ", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        output.WriteLine(e.Message);
    }
}
