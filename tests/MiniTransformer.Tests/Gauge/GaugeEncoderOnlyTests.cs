using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.Gauge;

/// <summary>
/// Encoder-only BERT (no MLM head, as a sentence encoder ships): the observable is the last hidden state and the pooler
/// output; every kind that exists keeps them, the last LayerNorm is not foldable, and the analytic count equals the
/// rank deficiency of the exact Jacobian of those outputs.
/// </summary>
public class GaugeEncoderOnlyTests
{
    static BertConfig Config(int d = 4, int H = 2, int F = 6, int V = 7, int T = 3, int S = 2, int L = 1, double eps = 1e-3, bool pooler = false) =>
        GaugeTestModels.BertConfig(d, H, F, V, T, S, L, eps, pooler) with { MlmHead = false };

    public static TheoryData<string, int, int, int, int, int, bool> VerifyCases()
    {
        var data = new TheoryData<string, int, int, int, int, int, bool>();
        string[] kinds = ["qk", "kbias", "ov", "vbias", "lnmean", "writer1", "embshift", "postln", "mlp"];
        // (d, H, L, S, T, pooler): even with a pooler, odd (3 heads of 2, 3 types, 2 layers), one head without a pooler.
        (int, int, int, int, int, bool)[] sizes = [(4, 2, 1, 2, 3, true), (6, 3, 2, 3, 5, false), (5, 1, 1, 1, 4, true)];
        foreach (var k in kinds)
            foreach (var (d, H, L, S, T, pool) in sizes) data.Add(k, d, H, L, S, T, pool);
        return data;
    }

    [Theory]
    [MemberData(nameof(VerifyCases))]
    public void EachKindKeepsTheHiddenStateAndPoolerOutput(string kind, int d, int H, int L, int S, int T, bool pooler)
    {
        var model = GaugeTestModels.GenericBert(Config(d, H, 2 * d + 1, V: 11, T: T, S: S, L: L, eps: 1e-12, pooler: pooler));
        var k = GaugeKind.Parse(kind)[0];
        var a = GaugeArch.For(model);
        Assert.True(a.EncoderOnly);
        Assert.True(k.Applies(a));
        var c64 = Invariance.Check(model, k, seed: 3, CpuBackend<double>.Instance);
        Assert.True(c64.Symmetry);
        Assert.True(c64.MaxRel < 1e-12, $"{kind}: f64 relative deviation {c64.MaxRel:E2}");
        Assert.True(c64.PerturbationRel > 1e-4, $"{kind}: the same-norm perturbation moved the outputs by only {c64.PerturbationRel:E2}");
        Assert.True(c64.WeightChange > 1e-3, $"{kind}: weights barely changed ({c64.WeightChange:E2})");
        var c32 = Invariance.Check(model, k, seed: 3, CpuBackend<float>.Instance);
        Assert.True(c32.MaxRel < 1e-5, $"{kind}: f32 relative deviation {c32.MaxRel:E2}");
    }

    [Fact]
    public void TheOutputsAreTheLastHiddenStateThenThePoolerOutput()
    {
        var c = Config(pooler: true, eps: 1e-12);
        var model = GaugeTestModels.GenericBert(c);
        var a = GaugeArch.For(model);
        var p = ParamSet.From(model.Parameters);
        var (ids, B, T) = Invariance.RandomInputs(a, 5, B: 2);
        var (types, mask) = Invariance.RandomExtras(a, 5, B, T);
        var y = Invariance.Outputs(model, a, p, CpuBackend<double>.Instance, ids, B, T, types, mask);
        model.Forward(ids, null, B, T, types, mask);
        Assert.Equal(B * T * c.HiddenSize + B * c.HiddenSize, y.Length);
        Assert.Equal(model.Hidden.Data, y[..(B * T * c.HiddenSize)]);
        Assert.Equal(model.Pooled.Data, y[(B * T * c.HiddenSize)..]);
        // The last LayerNorm's gain shows in the outputs: scaling it is no symmetry of an encoder-only model.
        var q = p.Clone();
        foreach (ref var g in q[a.FinalLnGain].AsSpan()) g *= 1.5;
        Assert.True(Invariance.Deviation(y, Invariance.Outputs(model, a, q, CpuBackend<double>.Instance, ids, B, T, types, mask)).MaxRel > 0.1);
    }

    [Fact]
    public void OnlyTheKindsThatExistApply()
    {
        var a = GaugeArch.ForBert(Config(pooler: true));
        Assert.True(a.EncoderOnly);
        Assert.False(a.Tied);
        Assert.False(a.HasUntiedOutputMap);
        Assert.Empty(a.FoldableLns);
        Assert.Empty(a.Unused);
        Assert.Throws<InvalidOperationException>(() => a.OutputMap);
        foreach (var name in new[] { "lngain", "lnbias", "residual" })
        {
            Assert.False(GaugeKind.Parse(name)[0].Applies(a), name);
            Assert.Equal(0, GaugeKind.Parse(name)[0].Count(a));
        }
        // The pooler reads the last LayerNorm: the one reader of it that can take the mean direction.
        Assert.Contains(a.MeanLns, ln => ln.Gain == a.FinalLnGain && ln.Readers.Single().Weight == "bert.pooler.dense.weight");
        Assert.DoesNotContain(GaugeArch.ForBert(Config(pooler: false)).MeanLns, ln => ln.Gain == a.FinalLnGain);
        // The MLM model of the same shape still folds its last LayerNorm into the head.
        var mlm = GaugeArch.ForBert(Config(pooler: true) with { MlmHead = true });
        Assert.False(mlm.EncoderOnly);
        Assert.True(GaugeKind.Parse("lngain")[0].Applies(mlm));
    }

    [Theory]
    [InlineData(4, 2, 6, 7, 3, 2, 1, false)]
    [InlineData(4, 2, 6, 7, 3, 2, 1, true)]
    [InlineData(4, 2, 5, 6, 3, 2, 2, true)]
    [InlineData(5, 1, 7, 8, 2, 1, 1, false)]     // one head, one token type
    public void AnalyticEqualsNumeric(int d, int H, int F, int V, int T, int S, int L, bool pooler)
    {
        var c = Config(d, H, F, V, T, S, L, eps: 1e-3, pooler: pooler);
        var model = GaugeTestModels.GenericBert(c);
        var a = GaugeArch.ForBert(c);
        var p = ParamSet.From(model.Parameters);
        Assert.Equal(c.ParameterCount, p.Count);
        var analytic = FlatDirections.Analytic(a, p.Count);
        Assert.Equal(0, analytic.Unused);
        Assert.Equal(2 * L + 1, analytic.NearFlat);
        // By hand: qk + ov 2·d·d_h, kbias + vbias 2d per layer; lnmean 3d (each qkv) + F (fc) per layer, + d (pooler);
        // writer1 d + F + 2 per layer (less one per one-head layer); embshift V + T + d − 1 + d + S − 1; postln 2L·d.
        int expect = L * (2 * d * (d / H) + 2 * d) + L * (3 * d + F) + (pooler ? d : 0) + L * (d + F + 2) - (H == 1 ? L : 0)
            + V + T + d - 1 + d + S - 1 + 2 * L * d;
        Assert.Equal(expect, analytic.Analytic);
        var n = FlatDirections.Numeric(model, seed: 1);
        Assert.True(n.GapRatio > 1e4, $"gap ratio only {n.GapRatio:E2}");
        Assert.Equal(analytic.Analytic, n.Null);
        Assert.Equal(analytic.Analytic, n.TangentRank);
        foreach (var g in n.Generators)
        {
            Assert.True(g.WorstRatio < 1e-10, $"{g.Kind}: ‖J·t‖/(σ_max‖t‖) = {g.WorstRatio:E2}");
            Assert.Equal(analytic.ByKind[g.Kind], g.Rank);
        }
        Assert.True(n.NearFlatRatio > 1e-10 && n.NearFlatRatio < 1e-2, $"near-flat ratio {n.NearFlatRatio:E2}");
    }
}
