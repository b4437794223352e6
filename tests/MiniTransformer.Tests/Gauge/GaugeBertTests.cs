using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;

namespace MiniTransformer.Tests.Gauge;

/// <summary>BERT (post-LN, MLM head): every kind preserves the function; analytic counts equal the Jacobian's.</summary>
public class GaugeBertTests
{
    public static TheoryData<string, int, int, int, int, int, bool, bool> VerifyCases()
    {
        var data = new TheoryData<string, int, int, int, int, int, bool, bool>();
        string[] kinds = ["qk", "kbias", "ov", "vbias", "lngain", "lnbias", "lnmean", "writer1", "embshift", "postln"];
        // (d, H, L, S, T, pooler, tied): even, odd (3 heads of 2, 3 types, 2 layers, pooler), one head, untied.
        (int, int, int, int, int, bool, bool)[] sizes = [(4, 2, 1, 2, 3, false, true), (6, 3, 2, 3, 5, true, true), (5, 1, 1, 1, 4, false, true), (6, 2, 2, 2, 4, false, false)];
        foreach (var k in kinds)
            foreach (var (d, H, L, S, T, pool, tied) in sizes) data.Add(k, d, H, L, S, T, pool, tied);
        return data;
    }

    [Theory]
    [MemberData(nameof(VerifyCases))]
    public void EachKindPreservesTheFunctionInFloat64AndFloat32(string kind, int d, int H, int L, int S, int T, bool pooler, bool tied)
    {
        var model = GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(d: d, H: H, F: 2 * d + 1, V: 11, T: T, S: S, L: L, eps: 1e-12, pooler: pooler, tied: tied));
        var k = GaugeKind.Parse(kind)[0];
        Assert.True(k.Applies(GaugeArch.For(model)));
        var c64 = Invariance.Check(model, k, seed: 3, CpuBackend<double>.Instance);
        Assert.True(c64.Symmetry);
        Assert.True(c64.MaxRel < 1e-12, $"{kind}: f64 relative deviation {c64.MaxRel:E2}");
        Assert.True(c64.PerturbationRel > 1e-4, $"{kind}: the same-norm perturbation moved the outputs by only {c64.PerturbationRel:E2}");
        Assert.True(c64.WeightChange > 1e-3, $"{kind}: weights barely changed ({c64.WeightChange:E2})");
        var c32 = Invariance.Check(model, k, seed: 3, CpuBackend<float>.Instance);
        Assert.True(c32.MaxRel < 1e-5, $"{kind}: f32 relative deviation {c32.MaxRel:E2}");
    }

    [Fact]
    public void ResidualRotationDoesNotExistPostLn()
    {
        var a = GaugeArch.For(GaugeTestModels.GenericBert(GaugeTestModels.BertConfig()));
        Assert.False(GaugeKind.Parse("residual")[0].Applies(a));
        Assert.Equal(0, GaugeKind.Parse("residual")[0].Count(a));
        Assert.True(GaugeKind.Parse("postln")[0].Applies(a));
    }

    [Theory]
    // The reference: d=4, H=2, F=6, V=7, T=3, S=2, L=1, ε=1e-3, no pooler: 91 flat of 245.
    [InlineData(4, 2, 6, 7, 3, 2, 1, false, true, 245, 91)]
    [InlineData(4, 2, 6, 7, 3, 2, 2, false, true, -1, -1)]
    [InlineData(6, 3, 5, 9, 4, 3, 1, false, true, -1, -1)]
    [InlineData(5, 1, 7, 8, 2, 1, 1, false, true, -1, -1)]     // one head, one token type
    [InlineData(4, 2, 6, 7, 3, 2, 1, true, true, 265, 91)]     // + pooler: 20 unused, apart
    [InlineData(4, 2, 6, 7, 3, 2, 1, false, false, -1, -1)]    // untied decoder
    public void AnalyticEqualsNumeric(int d, int H, int F, int V, int T, int S, int L, bool pooler, bool tied, int expectParams, int expectFlat)
    {
        var c = GaugeTestModels.BertConfig(d, H, F, V, T, S, L, eps: 1e-3, pooler: pooler, tied: tied);
        var model = GaugeTestModels.GenericBert(c);
        var a = GaugeArch.ForBert(c);
        var p = ParamSet.From(model.Parameters);
        Assert.Equal(c.ParameterCount, p.Count);
        var analytic = FlatDirections.Analytic(a, p.Count);
        if (expectParams > 0) Assert.Equal(expectParams, p.Count);
        if (expectFlat > 0) Assert.Equal(expectFlat, analytic.Analytic);
        Assert.Equal(pooler ? d * d + d : 0, analytic.Unused);
        Assert.Equal(2 * L + 1, analytic.NearFlat);
        if (tied)   // the formula
            Assert.Equal(L * (2 * d * (d / H) + 8 * d + 2 * F + 2) + 6 * d + T + S - (H == 1 ? L : 0), analytic.Analytic);
        var n = FlatDirections.Numeric(model, seed: 1);
        Assert.True(n.GapRatio > 1e4, $"gap ratio only {n.GapRatio:E2}");
        Assert.Equal(analytic.Analytic, n.Null);
        Assert.Equal(analytic.Analytic, n.TangentRank);
        foreach (var g in n.Generators)
        {
            Assert.True(g.WorstRatio < 1e-10, $"{g.Kind}: ‖J·t‖/(σ_max‖t‖) = {g.WorstRatio:E2}");
            Assert.Equal(analytic.ByKind[g.Kind], g.Rank);
        }
        // The 2L + 1 near-flat directions are not null at ε = 1e-3, but small.
        Assert.True(n.NearFlatRatio > 1e-10 && n.NearFlatRatio < 1e-2, $"near-flat ratio {n.NearFlatRatio:E2}");
    }
}
