using System.Text.Json;
using MiniTransformer.IO;
using MiniTransformer.Gauge;

namespace MiniTransformer.Tests.Gauge;

/// <summary>mt gauge apply / verify / count, in-process.</summary>
[Collection("cli")]
public sealed class GaugeCliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-gauge-").FullName;
    public void Dispose() => Directory.Delete(dir, true);
    string P(string name) => Path.Combine(dir, name);

    static (int Code, string Out, string Err) Run(params string[] args) => InProcessCli.Run(args);

    [Fact]
    public void ApplyVerifyAndCount()
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(d: 4, H: 2, F: 6, V: 7, T: 3, L: 1, tied: false));
        ModelFiles.Save(model, P("m"), StDType.F64);
        var (code, _, err) = Run("gauge", "apply", "--model", P("m"), "--out", P("g"), "--kinds", "qk,ov,residual", "--seed", "4");
        Assert.True(code == 0, err);
        var g = ModelFiles.LoadGpt2(P("g"), MiniTransformer.Backends.Cpu.CpuBackend<double>.Instance);
        Assert.True(ParamSet.From(g.Parameters).Minus(ParamSet.From(model.Parameters)).Norm() > 1e-2);

        (code, var json, err) = Run("gauge", "verify", "--model", P("m"), "--json");
        Assert.True(code == 0, err + json);
        var kinds = JsonDocument.Parse(json).RootElement.GetProperty("kinds");
        Assert.False(kinds.TryGetProperty("postln", out _));   // post-LN only
        foreach (var k in GaugeKind.All.Where(k => k.Name != "postln"))
        {
            var e = kinds.GetProperty(k.Name);
            Assert.True(e.GetProperty("max_rel").GetDouble() < 1e-12);
            Assert.True(e.GetProperty("perturbation_rel").GetDouble() > 1e-4);
            Assert.True(e.GetProperty("max_abs").GetDouble() >= 0);
        }

        (code, json, err) = Run("gauge", "count", "--model", P("m"), "--numeric", "--json", "--spectrum", P("spectrum.png"));
        Assert.True(code == 0, err + json);
        var c = JsonDocument.Parse(json).RootElement;
        Assert.Equal(230, c.GetProperty("parameters").GetInt32());
        Assert.Equal(98, c.GetProperty("analytic").GetInt32());
        Assert.Equal(98, c.GetProperty("numeric").GetInt32());
        Assert.Equal(1, c.GetProperty("near_flat").GetInt32());
        Assert.Equal(0, c.GetProperty("unused").GetInt32());
        Assert.Equal(3, c.GetProperty("by_kind").GetProperty("residual").GetInt32());
        Assert.True(File.Exists(P("spectrum.png")));
    }

    [Fact]
    public void TiedResidualIsRefusedAndBadKindsNamed()
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(tied: true));
        ModelFiles.Save(model, P("t"), StDType.F64);
        var (code, _, err) = Run("gauge", "apply", "--model", P("t"), "--out", P("x"), "--kinds", "residual");
        Assert.Equal(2, code);
        Assert.Contains("not a symmetry", err);
        Assert.False(Directory.Exists(P("x")));
        (code, _, err) = Run("gauge", "verify", "--model", P("t"), "--kinds", "qk,bogus");
        Assert.Equal(2, code);
        Assert.Contains("bogus", err);
        // verify shows the broken rotation but does not fail on it.
        (code, var outText, err) = Run("gauge", "verify", "--model", P("t"), "--kinds", "residual,qk");
        Assert.True(code == 0, err);
        Assert.Contains("not a symmetry here", outText);
    }
}
