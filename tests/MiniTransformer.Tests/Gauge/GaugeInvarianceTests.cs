using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;

namespace MiniTransformer.Tests.Gauge;

public class GaugeInvarianceTests
{
    public static TheoryData<string, bool, int, int, int> Cases() => new()
    {
        { "qk", true, 1, 4, 2 }, { "kbias", true, 1, 4, 2 }, { "ov", true, 1, 4, 2 }, { "vbias", true, 1, 4, 2 },
        { "lngain", true, 2, 6, 3 }, { "lnbias", true, 2, 6, 3 }, { "lnmean", true, 2, 6, 3 },
        { "writer1", true, 2, 6, 3 }, { "embshift", true, 2, 6, 3 },
        { "qk", false, 2, 6, 3 }, { "kbias", false, 1, 4, 2 }, { "ov", false, 2, 6, 3 }, { "vbias", false, 2, 6, 3 },
        { "lngain", false, 2, 6, 3 }, { "lnbias", false, 2, 6, 3 }, { "lnmean", false, 1, 4, 2 },
        { "writer1", false, 2, 6, 3 }, { "embshift", false, 2, 6, 3 }, { "residual", false, 2, 6, 3 }, { "residual", false, 1, 5, 1 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void EachKindPreservesTheFunctionInFloat64AndFloat32(string kind, bool tied, int L, int d, int H)
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(d: d, H: H, F: 2 * d + 1, V: 11, T: 5, L: L, tied: tied));
        var k = GaugeKind.Parse(kind)[0];
        var c64 = Invariance.Check(model, k, seed: 3, CpuBackend<double>.Instance);
        Assert.True(c64.Symmetry);
        Assert.True(c64.MaxRel < 1e-12, $"{kind}: f64 relative deviation {c64.MaxRel:E2}");
        Assert.True(c64.PerturbationRel > 1e-4, $"{kind}: the same-norm perturbation moved the outputs by only {c64.PerturbationRel:E2}");
        Assert.True(c64.WeightChange > 1e-3, $"{kind}: weights barely changed ({c64.WeightChange:E2})");
        var c32 = Invariance.Check(model, k, seed: 3, CpuBackend<float>.Instance);
        Assert.True(c32.MaxRel < 1e-5, $"{kind}: f32 relative deviation {c32.MaxRel:E2}");
    }

    [Fact]
    public void ResidualRotationIsNotASymmetryOfTiedGpt2()
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(d: 6, H: 3, F: 13, V: 11, T: 5, L: 2, tied: true));
        var c = Invariance.Check(model, GaugeKind.Parse("residual")[0], seed: 3, CpuBackend<double>.Instance);
        Assert.False(c.Symmetry);
        Assert.True(c.MaxRel > 1e-3, $"tied residual rotation changed the outputs by only {c.MaxRel:E2}");
    }
}
