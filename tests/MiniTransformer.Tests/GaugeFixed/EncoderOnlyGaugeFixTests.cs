using System.Text.Json;
using System.Text.RegularExpressions;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Cli.Commands;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tests.Gauge;
using MiniTransformer.Training;
using static MiniTransformer.Tests.InProcessCli;

namespace MiniTransformer.Tests.GaugeFixed;

/// <summary>
/// The canonical (gauge-fixed) form of an encoder-only BERT (no MLM head): the last hidden state and the pooler output
/// kept to float64 round-off, the fixed entries = the toolkit's analytic count, idempotence, and mt gauge fix on it.
/// </summary>
[Collection("cli")]
public sealed class EncoderOnlyGaugeFixTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-eofix-").FullName;
    public void Dispose() => Directory.Delete(dir, true);
    string P(string name) => Path.Combine(dir, name);

    static BertConfig Config(int d, int H, int F, int V, int T, int S, int L, bool pooler) =>
        new(V, T, d, L, H, F, S, 1e-12, Pooler: pooler, TieWordEmbeddings: false, MlmHead: false);

    /// <summary>Max relative deviation of the last hidden state (+ pooler output) on random token types and a padded key, float64.</summary>
    static double Dev(Bert<double> m, GaugeArch a, ParamSet p0, ParamSet p1, int seed = 3)
    {
        var (ids, B, T) = Invariance.RandomInputs(a, seed);
        var (types, mask) = Invariance.RandomExtras(a, seed, B, T);
        var y0 = Invariance.Outputs(m, a, p0, CpuBackend<double>.Instance, ids, B, T, types, mask);
        var y1 = Invariance.Outputs(m, a, p1, CpuBackend<double>.Instance, ids, B, T, types, mask);
        Assert.Equal(B * T * a.D + (m.Config.Pooler ? B * a.D : 0), y0.Length);
        return Invariance.Deviation(y0, y1).MaxRel;
    }

    [Theory]
    [InlineData(4, 2, 6, 7, 3, 2, 1, false)]
    [InlineData(4, 2, 6, 7, 3, 2, 1, true)]
    [InlineData(6, 3, 10, 29, 8, 3, 2, true)]     // odd sizes, a pooler
    [InlineData(6, 3, 5, 9, 4, 3, 2, false)]
    [InlineData(5, 1, 7, 8, 2, 1, 1, true)]       // one head: writer1 and lnmean kept
    [InlineData(6, 1, 4, 11, 5, 2, 2, false)]
    public void FixKeepsTheOutputsAndFixesTheAnalyticCount(int d, int H, int F, int V, int T, int S, int L, bool pooler)
    {
        var m = GaugeTestModels.GenericBert(Config(d, H, F, V, T, S, L, pooler));
        var a = GaugeArch.ForBert(m.Config);
        Assert.True(a.EncoderOnly);
        var p0 = ParamSet.From(m.Parameters);
        var c = Canonical.Fix(a, p0);
        double dev = Dev(m, a, p0, c.Params);
        Assert.True(dev < 1e-12, $"outputs moved by {dev:E2}");
        Assert.True(c.Params.Minus(p0).Norm() > 0.1 * p0.Norm());   // the weights did move

        var an = FlatDirections.Analytic(a, p0.Count);
        foreach (var (kind, n) in c.Removed) Assert.Equal(an.ByKind[kind], n);
        string[] expectKinds = H == 1
            ? ["qk", "kbias", "ov", "vbias", "embshift", "postln"]
            : ["qk", "kbias", "ov", "vbias", "lnmean", "writer1", "embshift", "postln"];
        Assert.Equal(expectKinds.Order(), c.Removed.Keys.Order());
        int expected = an.Analytic - (H == 1 ? an.ByKind["writer1"] + an.ByKind["lnmean"] : 0);
        Assert.Equal(expected, c.FixedCount);
        Assert.Equal(p0.Count - c.FixedCount, c.FreeCount);
        // The token table is an input only: E row 0 (d) and E[v ≥ 1, 0] (V − 1).
        Assert.Equal(d + V - 1, c.Fixed["bert.embeddings.word_embeddings.weight"].Count);
        // The last LayerNorm's output is the observable: its gain and bias are neither fixed nor moved.
        Assert.DoesNotContain(a.FinalLnGain, c.Fixed.Keys);
        Assert.DoesNotContain(a.FinalLnBias, c.Fixed.Keys);
        Assert.Equal(p0[a.FinalLnGain], c.Params[a.FinalLnGain]);
        Assert.Equal(p0[a.FinalLnBias], c.Params[a.FinalLnBias]);
        if (pooler && H > 1) Assert.Equal(d, c.Fixed["bert.pooler.dense.weight"].Count);   // lnmean: the pooler's row 0
        foreach (var (t, e) in c.Fixed) foreach (var (i, v) in e) Assert.Equal(v, c.Params[t][i]);

        // Idempotent: fixing the fixed model changes nothing beyond round-off (and fixes the same entries).
        var again = Canonical.Fix(a, c.Params);
        Assert.True(again.Params.Minus(c.Params).Norm() < 1e-12 * c.Params.Norm(), $"refix moved by {again.Params.Minus(c.Params).Norm():E2}");
        Assert.Equal(c.Fixed.Keys, again.Fixed.Keys);
        foreach (var (t, e) in c.Fixed) Assert.Equal(e.Keys, again.Fixed[t].Keys);
        Assert.True(Dev(m, a, p0, again.Params) < 1e-12);
    }

    [Fact]
    public void FixingTwoGaugeEquivalentModelsGivesTheSameCanonicalForm()
    {
        var m = GaugeTestModels.GenericBert(Config(6, 3, 10, 29, 8, 3, 2, pooler: true));
        var a = GaugeArch.ForBert(m.Config);
        var p0 = ParamSet.From(m.Parameters);
        var p1 = p0.Clone();
        var rng = new Random(5);
        foreach (var kind in GaugeKind.All.Where(k => k.Applies(a) && k.Count(a) > 0 && k.Name is not ("mlp" or "residual")))
            kind.Apply(a, p1, rng);
        Assert.True(Dev(m, a, p0, p1) < 1e-10);
        Assert.True(p1.Minus(p0).Norm() > 0.1 * p0.Norm());
        var c0 = Canonical.Fix(a, p0); var c1 = Canonical.Fix(a, p1);
        Assert.True(c1.Params.Minus(c0.Params).Norm() < 1e-9 * c0.Params.Norm(), $"canonical forms differ by {c1.Params.Minus(c0.Params).Norm():E2}");
    }

    string InitEncoderOnly(string name, bool pooler, int dim, int heads, int layers)
    {
        string[] args = ["init", "--arch", "bert", "--encoder-only", "--layers", layers.ToString(), "--heads", heads.ToString(), "--dim", dim.ToString(),
            "--ffn", "10", "--vocab", "13", "--ctx", "7", "--seed", "4", "--out", P(name), .. (pooler ? new[] { "--pooler" } : [])];
        var r = Run(args);
        Assert.True(r.Code == 0, r.Err + r.Out);
        return P(name);
    }

    [Theory]
    [InlineData(true, 6, 3, 2)]
    [InlineData(false, 6, 3, 1)]
    [InlineData(true, 5, 1, 1)]
    public void GaugeFixOnTheCommandLine(bool pooler, int dim, int heads, int layers)
    {
        string m = InitEncoderOnly("eo", pooler, dim, heads, layers);
        var (code, o, err) = Run("gauge", "fix", "--model", m, "--out", P("f"));
        Assert.True(code == 0, err + o);
        Assert.Contains(pooler ? "last hidden state + pooler output (float64" : "last hidden state (float64", o);
        Assert.Contains("(< 1e-12)", o);
        Assert.DoesNotContain("lngain", o);
        var g = JsonDocument.Parse(File.ReadAllText(P("f/gauge.json"))).RootElement;
        Assert.True(g.GetProperty("output_max_rel_deviation_f64").GetDouble() < 1e-12);
        Assert.False(g.TryGetProperty("logprob_max_rel_deviation_f64", out _));
        int n = g.GetProperty("fixed").EnumerateArray().Sum(e => e.GetProperty("indices").GetArrayLength());
        Assert.Equal(g.GetProperty("fixed_count").GetInt32(), n);

        // = the analytic count mt gauge count prints (less writer1 and lnmean with one head, kept as for GPT-2).
        var count = Run("gauge", "count", "--model", m);
        Assert.True(count.Code == 0, count.Err);
        var analytic = Regex.Match(count.Out, @"analytic: ([\d,]+) flat");
        Assert.True(analytic.Success, count.Out);
        var bert = ModelFiles.LoadBert(m, CpuBackend<double>.Instance);
        var an = FlatDirections.Analytic(GaugeArch.ForBert(bert.Config), ParamSet.From(bert.Parameters).Count);
        Assert.Equal(an.Analytic, int.Parse(analytic.Groups[1].Value.Replace(",", "")));
        Assert.Equal(an.Analytic - (heads == 1 ? an.ByKind["writer1"] + an.ByKind["lnmean"] : 0), n);

        // Every entry, by its stored name and flat index, holds its value in model.safetensors.
        var file = SafeTensors.Read(P("f/model.safetensors"));
        foreach (var e in g.GetProperty("fixed").EnumerateArray())
        {
            var t = file[e.GetProperty("tensor").GetString()!].ToDoubles();
            var idx = e.GetProperty("indices").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var val = e.GetProperty("values").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            for (int i = 0; i < idx.Length; i++) Assert.Equal(val[i], t[idx[i]]);
        }

        // Fixing the fixed model again moves nothing beyond round-off; diff reads (about) zero modulo the gauge.
        var (code2, o2, err2) = Run("gauge", "fix", "--model", P("f"), "--out", P("ff"));
        Assert.True(code2 == 0, err2 + o2);
        var f1 = SafeTensors.Read(P("f/model.safetensors"));
        var f2 = SafeTensors.Read(P("ff/model.safetensors"));
        double diff = 0, norm = 0;
        foreach (var t in f1.Tensors)
        {
            var x = t.ToDoubles(); var y = f2[t.Name].ToDoubles();
            for (int i = 0; i < x.Length; i++) { diff += (x[i] - y[i]) * (x[i] - y[i]); norm += x[i] * x[i]; }
        }
        Assert.True(Math.Sqrt(diff) < 1e-12 * Math.Sqrt(norm), $"refix moved by {Math.Sqrt(diff):E2}");
        var d = Run("gauge", "diff", "--model", m, "--model", P("f"), "--json");
        Assert.True(d.Code == 0, d.Err);
        var dj = JsonDocument.Parse(d.Out).RootElement;
        Assert.True(dj.GetProperty("modulo_gauge_rel").GetDouble() < 1e-10, d.Out);
        Assert.True(dj.GetProperty("logprob_max_rel_deviation").GetDouble() < 1e-12, d.Out);
    }

    [Fact]
    public void TrainGaugeFixedRefusesAnEncoderOnlyModelInOneLine()
    {
        string m = InitEncoderOnly("eo", true, 6, 3, 1);
        var r = Run("train", "--model", m, "--gauge-fixed", "--data", "synthetic:bio", "--steps", "1", "--seq", "7", "--batch", "2", "--out", P("run"));
        AssertInputError(r, "encoder-only");
        Assert.Single(r.Err.Trim().Split('\n'));
        Assert.False(Directory.Exists(P("run")));
        // The gauge-fixed training set-up itself refuses too, before writing anything.
        var bert = ModelFiles.LoadBert(m, CpuBackend<double>.Instance);
        var e = Assert.Throws<InputException>(() => GaugeFixCommands.SetupTraining(bert, P("run2"), false, new TrainConfig(1, 2, 7), null, quiet: true));
        Assert.Contains("encoder-only", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(Directory.Exists(P("run2")));
    }
}
