using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;

namespace MiniTransformer.Tests.Gauge;

/// <summary>mlp: permuting each MLP's hidden units preserves the function and adds no flat direction.</summary>
public class GaugeMlpTests
{
    [Fact]
    public void HiddenUnitPermutationIsExactOnGpt2AndBert()
    {
        var models = new MiniTransformer.Models.ILanguageModel<double>[]
        {
            GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(d: 6, H: 3, F: 13, V: 11, T: 5, S: 2, L: 2, eps: 1e-12, pooler: false, tied: true)),
            GaugeTestModels.Generic(GaugeTestModels.Config(d: 6, H: 3, F: 13, V: 11, T: 5, L: 2, tied: false)),
        };
        var k = GaugeKind.Parse("mlp")[0];
        foreach (var model in models)
        {
            var a = GaugeArch.For(model);
            Assert.Equal(0, k.Count(a));
            Assert.Empty(k.Tangents(a, ParamSet.From(model.Parameters)));
            var c64 = Invariance.Check(model, k, seed: 5, CpuBackend<double>.Instance);
            Assert.True(c64.MaxRel < 1e-12, $"{model.Arch}: f64 relative deviation {c64.MaxRel:E2}");
            Assert.True(c64.WeightChange > 0.1, $"{model.Arch}: weights barely changed ({c64.WeightChange:E2})");
            Assert.True(c64.PerturbationRel > 1e-4);
        }
    }
}
