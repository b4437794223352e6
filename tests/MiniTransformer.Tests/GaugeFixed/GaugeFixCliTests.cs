using System.Text.Json;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Tests.Gauge;

namespace MiniTransformer.Tests.GaugeFixed;

/// <summary>mt gauge fix / diff / train --gauge-fixed, in-process.</summary>
[Collection("cli")]
public sealed class GaugeFixCliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-gaugefix-cli-").FullName;
    public void Dispose() => Directory.Delete(dir, true);
    string P(string name) => Path.Combine(dir, name);

    static (int Code, string Out, string Err) Run(params string[] args) => InProcessCli.Run(args);

    [Fact]
    public void FixWritesGaugeJsonAndDiffReadsZeroForAGaugeTransform()
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(d: 6, H: 3, F: 10, V: 29, T: 8, L: 2, tied: false));
        ModelFiles.Save(model, P("m"), StDType.F64);
        // A fresh model (zero biases, unit gains) too: ties in the biases must not decide the canonical order.
        var (code, o, err) = Run("init", "--arch", "gpt2", "--layers", "2", "--heads", "3", "--dim", "6", "--ffn", "10", "--vocab", "29", "--ctx", "8", "--seed", "2", "--untied", "--out", P("fresh"));
        Assert.True(code == 0, err);
        (code, _, err) = Run("gauge", "apply", "--model", P("fresh"), "--out", P("fresh-g"), "--kinds", "qk,kbias,ov,vbias,lngain,lnbias,lnmean,writer1,embshift,mlp", "--seed", "5");
        Assert.True(code == 0, err);
        (code, o, err) = Run("gauge", "diff", "--model", P("fresh"), "--model", P("fresh-g"), "--json");
        Assert.True(code == 0, err + o);
        Assert.True(JsonDocument.Parse(o).RootElement.GetProperty("modulo_gauge_rel").GetDouble() < 1e-12, o);
        (code, o, err) = Run("gauge", "fix", "--model", P("m"), "--out", P("f"));
        Assert.True(code == 0, err + o);
        var g = JsonDocument.Parse(File.ReadAllText(P("f/gauge.json"))).RootElement;
        int n = g.GetProperty("fixed").EnumerateArray().Sum(e => e.GetProperty("indices").GetArrayLength());
        Assert.Equal(272, n);   // 282 flat − 10 residual (a rotation)
        Assert.Equal(1064 - 272, g.GetProperty("free_parameters").GetInt32());
        Assert.True(g.GetProperty("logprob_max_rel_deviation_f64").GetDouble() < 1e-12);
        var f = ModelFiles.LoadGpt2(P("f"), CpuBackend<double>.Instance);
        var fp = ParamSet.From(f.Parameters);
        foreach (var e in g.GetProperty("fixed").EnumerateArray())
        {
            var t = fp[e.GetProperty("tensor").GetString()!];
            var idx = e.GetProperty("indices").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var val = e.GetProperty("values").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            for (int i = 0; i < idx.Length; i++) Assert.Equal(val[i], t[idx[i]]);
        }

        (code, _, err) = Run("gauge", "apply", "--model", P("m"), "--out", P("g"), "--kinds", "qk,kbias,ov,vbias,lngain,lnbias,lnmean,writer1,embshift,mlp", "--seed", "3");
        Assert.True(code == 0, err);
        (code, o, err) = Run("gauge", "diff", "--model", P("m"), "--model", P("g"), "--json");
        Assert.True(code == 0, err + o);
        var d = JsonDocument.Parse(o).RootElement;
        Assert.True(d.GetProperty("naive_rel").GetDouble() > 0.1);
        Assert.True(d.GetProperty("modulo_gauge_rel").GetDouble() < 1e-12);
    }

    [Fact]
    public void TrainGaugeFixedWritesGaugeJsonAndKeepsTheFixedEntries()
    {
        var (code, o, err) = Run("train", "--arch", "gpt2", "--layers", "1", "--heads", "2", "--dim", "16", "--ffn", "16", "--data", "synthetic:induction",
            "--steps", "4", "--batch", "2", "--seq", "16", "--eval-every", "4", "--eval-batches", "1", "--weight-decay", "0", "--gauge-fixed", "--out", P("run"));
        Assert.True(code == 0, err + o);
        var g = JsonDocument.Parse(File.ReadAllText(P("run/gauge.json"))).RootElement;
        var m = ModelFiles.LoadGpt2(P("run/checkpoint"), CpuBackend<double>.Instance);
        var p = ParamSet.From(m.Parameters);
        foreach (var e in g.GetProperty("fixed").EnumerateArray())
        {
            var t = p[e.GetProperty("tensor").GetString()!];
            var idx = e.GetProperty("indices").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var val = e.GetProperty("values").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            for (int i = 0; i < idx.Length; i++) Assert.Equal(val[i], t[idx[i]]);
        }
    }
}
