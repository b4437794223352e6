using MiniTransformer.Gauge;

namespace MiniTransformer.Tests.Gauge;

/// <summary>Analytic flat-direction counts against the rank deficiency of the exact float64 Jacobian.</summary>
public class GaugeCountTests
{
    [Theory]
    // The reference configurations (d=4, H=2, F=6, V=7, T=3, ε=1e-5) ...
    [InlineData(4, 2, 6, 7, 3, 1, true, 202, 77)]
    [InlineData(4, 2, 6, 7, 3, 2, true, 356, 147)]
    [InlineData(4, 2, 6, 7, 3, 1, false, 230, 98)]
    // ... and odd ones.
    [InlineData(6, 3, 5, 9, 4, 1, false, -1, -1)]
    [InlineData(5, 1, 7, 8, 2, 1, true, 282, 122)]    // one head: ov overlaps writer1 + vbias + lnmean by one
    [InlineData(4, 1, 5, 6, 3, 2, false, -1, -1)]
    public void AnalyticEqualsNumeric(int d, int H, int F, int V, int T, int L, bool tied, int expectParams, int expectFlat)
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(d, H, F, V, T, L, tied));
        var a = GaugeArch.ForGpt2(model.Config);
        var p = ParamSet.From(model.Parameters);
        var analytic = FlatDirections.Analytic(a, p.Count);
        if (expectParams > 0) Assert.Equal(expectParams, p.Count);
        if (expectFlat > 0) Assert.Equal(expectFlat, analytic.Analytic);
        var n = FlatDirections.Numeric(model, seed: 1);
        Assert.True(n.GapRatio > 1e4, $"gap ratio only {n.GapRatio:E2}");
        Assert.Equal(analytic.Analytic, n.Null);
        // The generators span exactly the null space: all inside it, and of full rank analytic.
        Assert.Equal(analytic.Analytic, n.TangentRank);
        foreach (var g in n.Generators)
        {
            Assert.True(g.WorstRatio < 1e-10, $"{g.Kind}: ‖J·t‖/(σ_max‖t‖) = {g.WorstRatio:E2}");
            Assert.Equal(analytic.ByKind[g.Kind], g.Rank);
        }
    }
}
