using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;

namespace MiniTransformer.Tests.Pretrained;

/// <summary>
/// The gauge toolkit on the real pretrained encoder-only BERT (all-MiniLM-L6-v2): every kind that exists keeps its last
/// hidden state and pooler output to float64 round-off, and the analytic count of its flat directions.
/// </summary>
public sealed class MiniLmGaugeTests(MiniLmFixture fx) : IClassFixture<MiniLmFixture>
{
    static readonly string[] Existing = ["qk", "kbias", "ov", "vbias", "lnmean", "writer1", "embshift", "postln", "mlp"];

    /// <summary>
    /// The two kinds that take a new form in an encoder-only model and meet the real weights' quirks: lnmean into the
    /// pooler, beside the last LayerNorm's dead gains, and E's shift along 1 (E is an input table only). The other kinds
    /// are checked on small encoder-only models (GaugeEncoderOnlyTests), and all of them on MiniLM by
    /// <c>mt gauge verify</c> (README); each check here copies the 22.7M parameters several times.
    /// </summary>
    [Fact]
    public void EncoderOnlyKindsKeepTheOutputsInFloat64()
    {
        var a = GaugeArch.For(fx.F64);
        Assert.True(a.EncoderOnly);
        foreach (var kind in new[] { "lnmean", "embshift" })
        {
            var k = GaugeKind.Parse(kind)[0];
            // Two rows of 6 random tokens (random types in row 1, its last key padded): small, still every code path.
            var c = Invariance.Check(fx.F64, k, seed: 1, CpuBackend<double>.Instance, B: 2, length: 6);
            Assert.True(c.Symmetry);
            Assert.True(c.MaxRel < 1e-12, $"{kind}: f64 relative deviation {c.MaxRel:E2}");
            Assert.True(c.PerturbationRel > 1e-3, $"{kind}: the same-norm perturbation moved the outputs by only {c.PerturbationRel:E2}");
            // Weights really move, and by a sane amount (lnmean beside the last LayerNorm's dead gains of ~5e-33 included).
            Assert.InRange(c.WeightChange, 1e-3, 10);
        }
    }

    [Fact]
    public void NoKindMissingAndNoneExtra()
    {
        var a = GaugeArch.For(fx.F64);
        Assert.Equal(Existing, GaugeKind.All.Where(k => k.Applies(a)).Select(k => k.Name));
    }

    [Fact]
    public void AnalyticCount()
    {
        var a = GaugeArch.ForBert(fx.Config);
        var n = FlatDirections.Analytic(a, (int)fx.Config.ParameterCount);
        // d = 384, d_h = 32, H = 12, F = 1536, L = 6, V = 30522, T = 512, S = 2, pooler.
        var expect = new Dictionary<string, int>
        {
            ["qk"] = 6 * 384 * 32, ["kbias"] = 6 * 384, ["ov"] = 6 * 384 * 32, ["vbias"] = 6 * 384,
            ["lngain"] = 0, ["lnbias"] = 0, ["lnmean"] = 6 * (3 * 384 + 1536) + 384, ["writer1"] = 6 * (384 + 1536 + 2),
            ["embshift"] = 30522 + 512 + 384 - 1 + 384 + 2 - 1, ["postln"] = 12 * 384, ["residual"] = 0, ["mlp"] = 0,
        };
        Assert.Equal(expect.OrderBy(x => x.Key), n.ByKind.OrderBy(x => x.Key));
        Assert.Equal(216_518, n.Analytic);
        Assert.Equal(13, n.NearFlat);
        Assert.Equal(0, n.Unused);
    }
}
