using System.Text.Json;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Tests.Gauge;

namespace MiniTransformer.Tests.GaugeFixed;

/// <summary>mt gauge fix / diff / train --gauge-fixed on BERT, in-process.</summary>
[Collection("cli")]
public sealed class BertGaugeFixCliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-bertfix-cli-").FullName;
    public void Dispose() => Directory.Delete(dir, true);
    string P(string name) => Path.Combine(dir, name);

    [Fact]
    public void FixWritesTheStoredNamesAndDiffReadsZeroForAGaugeTransform()
    {
        var model = GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(6, 3, 10, 29, 8, 3, 2, eps: 1e-12, pooler: true));
        ModelFiles.Save(model, P("m"), StDType.F64);
        var (code, o, err) = InProcessCli.Run("gauge", "fix", "--model", P("m"), "--out", P("f"));
        Assert.True(code == 0, err + o);
        Assert.Contains("postln", o);
        var g = JsonDocument.Parse(File.ReadAllText(P("f/gauge.json"))).RootElement;
        var a = GaugeArch.ForBert(model.Config);
        int n = g.GetProperty("fixed").EnumerateArray().Sum(e => e.GetProperty("indices").GetArrayLength());
        Assert.Equal(FlatDirections.Analytic(a, ParamSet.From(model.Parameters).Count).Analytic, n);
        Assert.True(g.GetProperty("logprob_max_rel_deviation_f64").GetDouble() < 1e-12);
        // Every entry, by its stored name (query/key/value split) and flat index, holds its value in model.safetensors.
        var file = SafeTensors.Read(P("f/model.safetensors"));
        foreach (var e in g.GetProperty("fixed").EnumerateArray())
        {
            var t = file[e.GetProperty("tensor").GetString()!].ToDoubles();
            var idx = e.GetProperty("indices").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var val = e.GetProperty("values").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            for (int i = 0; i < idx.Length; i++) Assert.Equal(val[i], t[idx[i]]);
        }
        // Diff: without a pooler (the toolkit's lngain/lnbias on the last LayerNorm are symmetries of the MLM logits, not of
        // the pooler output, which the canonical form keeps: with a pooler the two would rightly differ there).
        ModelFiles.Save(GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(6, 3, 10, 29, 8, 3, 2, eps: 1e-12)), P("m"), StDType.F64);
        (code, _, err) = InProcessCli.Run("gauge", "apply", "--model", P("m"), "--out", P("g"), "--kinds", "qk,kbias,ov,vbias,lngain,lnbias,lnmean,writer1,embshift,postln,mlp", "--seed", "3");
        Assert.True(code == 0, err);
        (code, o, err) = InProcessCli.Run("gauge", "diff", "--model", P("m"), "--model", P("g"), "--json");
        Assert.True(code == 0, err + o);
        var d = JsonDocument.Parse(o).RootElement;
        Assert.True(d.GetProperty("naive_rel").GetDouble() > 0.1);
        Assert.True(d.GetProperty("modulo_gauge_rel").GetDouble() < 1e-11);
    }

    [Fact]
    public void TrainBertGaugeFixedKeepsTheFixedEntriesAndSymmetryBreakingIsRefusedWithIt()
    {
        var (code, o, err) = InProcessCli.Run("train", "--arch", "bert", "--layers", "1", "--heads", "2", "--dim", "16", "--ffn", "16", "--data", "synthetic:bio",
            "--steps", "4", "--batch", "2", "--seq", "16", "--eval-every", "4", "--eval-batches", "1", "--weight-decay", "0", "--gauge-fixed", "--out", P("run"));
        Assert.True(code == 0, err + o);
        var g = JsonDocument.Parse(File.ReadAllText(P("run/gauge.json"))).RootElement;
        var file = SafeTensors.Read(P("run/checkpoint/model.safetensors"));
        foreach (var e in g.GetProperty("fixed").EnumerateArray())
        {
            var t = file[e.GetProperty("tensor").GetString()!].ToDoubles();
            var idx = e.GetProperty("indices").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var val = e.GetProperty("values").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            for (int i = 0; i < idx.Length; i++) Assert.Equal((float)val[i], (float)t[idx[i]]);
        }
        (code, _, err) = InProcessCli.Run("train", "--arch", "bert", "--layers", "1", "--heads", "2", "--dim", "16", "--data", "synthetic:bio",
            "--steps", "2", "--batch", "2", "--seq", "16", "--symmetry-breaking", "bq", "--gauge-fixed", "--out", P("run2"));
        Assert.Equal(2, code);
        Assert.Contains("--gauge-fixed", err);
        (code, o, err) = InProcessCli.Run("train", "--arch", "bert", "--layers", "1", "--heads", "2", "--dim", "16", "--data", "synthetic:bio",
            "--steps", "2", "--batch", "2", "--seq", "16", "--eval-every", "2", "--eval-batches", "1", "--symmetry-breaking", "bq,bv", "--mlp", "prelu", "--out", P("run3"));
        Assert.True(code == 0, err + o);
        var cfg = JsonDocument.Parse(File.ReadAllText(P("run3/checkpoint/config.json"))).RootElement;
        Assert.True(cfg.GetProperty("symmetry_breaking").GetProperty("bv").GetBoolean());
        Assert.Equal("prelu", cfg.GetProperty("mlp_activation").GetString());
        // ...and such a model has no canonical form here: refused in one line.
        (code, _, err) = InProcessCli.Run("gauge", "fix", "--model", P("run3/checkpoint"), "--out", P("nofix"));
        Assert.Equal(2, code);
        Assert.Contains("gauge fix: not for a model with --symmetry-breaking or --mlp prelu", err);
        Assert.False(Directory.Exists(P("nofix")));
    }
}
