using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.Gauge;
using MiniTransformer.Models;
using MiniTransformer.Tests.Gauge;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.GaugeFixed;

/// <summary>The canonical (gauge-fixed) form of a post-LN BERT: function, counts, transversality, skip kernels, training.</summary>
public sealed class BertGaugeFixTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), "mt-bertfix-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { if (Directory.Exists(dir)) Directory.Delete(dir, true); }

    /// <summary>Max relative deviation of the MLM log-probabilities (random token types, a padded key), float64.</summary>
    static double Dev(Bert<double> m, GaugeArch a, ParamSet p0, ParamSet p1, int seed = 3)
    {
        var (ids, B, T) = Invariance.RandomInputs(a, seed);
        var (types, mask) = Invariance.RandomExtras(a, seed, B, T);
        var y0 = Invariance.LogProbs(m, a, p0, CpuBackend<double>.Instance, ids, B, T, types, mask);
        var y1 = Invariance.LogProbs(m, a, p1, CpuBackend<double>.Instance, ids, B, T, types, mask);
        return Invariance.Deviation(y0, y1).MaxRel;
    }

    [Theory]
    [InlineData(4, 2, 6, 7, 3, 2, 1, true, false)]
    [InlineData(6, 3, 10, 29, 8, 3, 2, true, true)]    // the README's odd BERT, with a pooler
    [InlineData(4, 2, 7, 13, 5, 2, 1, false, false)]   // untied decoder
    [InlineData(6, 3, 5, 9, 4, 3, 2, false, true)]
    [InlineData(5, 1, 7, 8, 2, 1, 1, true, false)]     // one head: writer1 and lnmean kept
    public void FixPreservesTheFunctionAndFixesTheAnalyticCount(int d, int H, int F, int V, int T, int S, int L, bool tied, bool pooler)
    {
        var m = GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(d, H, F, V, T, S, L, eps: 1e-12, pooler: pooler, tied: tied));
        var a = GaugeArch.ForBert(m.Config);
        var p0 = ParamSet.From(m.Parameters);
        var c = Canonical.Fix(a, p0);
        double dev = Dev(m, a, p0, c.Params);
        Assert.True(dev < 1e-12, $"log-probabilities moved by {dev:E2}");
        Assert.True(c.Params.Minus(p0).Norm() > 0.1 * p0.Norm());   // the weights did move
        var an = FlatDirections.Analytic(a, p0.Count);
        foreach (var (kind, n) in c.Removed) Assert.Equal(an.ByKind[kind], n);
        // Every flat direction removed (post-LN has no residual rotation), except with one head (writer1 and lnmean kept, as in GPT-2).
        int expected = an.Analytic - (H == 1 ? an.ByKind["writer1"] + an.ByKind["lnmean"] : 0);
        Assert.Equal(expected, c.FixedCount);
        Assert.Equal(p0.Count - c.FixedCount, c.FreeCount);
        Assert.Contains("postln", c.Removed.Keys);
        foreach (var (t, e) in c.Fixed) foreach (var (i, v) in e) Assert.Equal(v, c.Params[t][i]);
        var again = Canonical.Fix(a, c.Params);
        Assert.True(again.Params.Minus(c.Params).Norm() < 1e-12 * c.Params.Norm());
        if (pooler)
        {
            // The pooler (outside the MLM logits) takes the last LayerNorm's gain and bias too: its output is kept.
            var (ids, B, Tn) = Invariance.RandomInputs(a, 4);
            var (types, mask) = Invariance.RandomExtras(a, 4, B, Tn);
            var m1 = new Bert<double>(m.Config, CpuBackend<double>.Instance);
            c.Params.CopyTo(m1.Parameters);
            m.Forward(ids, null, B, Tn, types, mask); m1.Forward(ids, null, B, Tn, types, mask);
            for (int k = 0; k < m.Pooled.Length; k++) Assert.True(Math.Abs(m.Pooled.Data[k] - m1.Pooled.Data[k]) < 1e-12);
        }
    }

    [Fact]
    public void GaugeJsonNamesTheStoredQueryKeyValueTensorsAndReadsBack()
    {
        var m = GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(6, 3, 10, 29, 8, 3, 2));
        var c = Canonical.Fix(GaugeArch.ForBert(m.Config), ParamSet.From(m.Parameters));
        var json = c.ToJson();
        var names = json["fixed"]!.AsArray().Select(e => (string)e!["tensor"]!).ToList();
        Assert.Contains("bert.encoder.layer.0.attention.self.query.weight", names);
        Assert.Contains("bert.encoder.layer.1.attention.self.key.bias", names);
        Assert.DoesNotContain(names, n => n.Contains(".qkv."));
        Assert.Equal(c.FixedCount, json["fixed"]!.AsArray().Sum(e => e!["indices"]!.AsArray().Count));
        var (back, q, v) = CanonicalForm.ReadJson(json);
        Assert.Equal(c.Fixed.Keys, back.Keys);
        foreach (var (t, e) in c.Fixed) Assert.Equal(e, back[t]);
        Assert.Equal(c.QPivots.SelectMany(x => x).SelectMany(x => x), q.SelectMany(x => x).SelectMany(x => x));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DiffModuloTheGaugeIsZeroForAPureGaugeTransform(bool tied)
    {
        var m = GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(6, 3, 10, 11, 5, 3, 2, tied: tied));
        var a = GaugeArch.ForBert(m.Config);
        var p0 = ParamSet.From(m.Parameters);
        var p1 = p0.Clone();
        var rng = new Random(5);
        foreach (var k in GaugeKind.Parse("qk,kbias,ov,vbias,lngain,lnbias,lnmean,writer1,embshift,postln,mlp")) k.Apply(a, p1, rng);
        Assert.True(p1.Minus(p0).Norm() > 0.1 * p0.Norm());
        var c0 = Canonical.Fix(a, p0); var c1 = Canonical.Fix(a, p1);
        Assert.True(c1.Params.Minus(c0.Params).Norm() < 1e-11 * c0.Params.Norm(), $"{c1.Params.Minus(c0.Params).Norm() / c0.Params.Norm():E2}");
    }

    [Fact]
    public void FreeParametersHaveNoFlatDirectionLeft()
    {
        var m = GaugeTestModels.GenericBert(GaugeTestModels.BertConfig(4, 2, 6, 7, 3, 2, 1));
        var a = GaugeArch.ForBert(m.Config);
        GaugeFixTests.AssertFreeParametersHaveNoFlatDirection(m, a);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(1)]
    public void SkipKernelsMatchTheFullProjectionAndGiveFixedEntriesNoGradient(int heads)
    {
        var cfg = GaugeTestModels.BertConfig(8, heads, 12, 11, 6, 2, 2);
        var m = GaugeTestModels.GenericBert(cfg);
        var a = GaugeArch.ForBert(cfg);
        var c = Canonical.Fix(a, ParamSet.From(m.Parameters));
        c.Params.CopyTo(m.Parameters);
        var fx = new Bert<double>(cfg, CpuBackend<double>.Instance);
        c.Params.CopyTo(fx.Parameters);
        GaugeFixedTraining.InstallKernels(fx, c.QPivots, c.VPivots);
        var rng = new Random(2);
        int B = 3, T = 6;
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        var tg = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        var types = Enumerable.Range(0, B * T).Select(_ => rng.Next(2)).ToArray();
        var mask = Enumerable.Repeat(1, B * T).ToArray(); mask[T + T - 1] = 0;
        var (l0, _) = m.Forward(ids, tg, B, T, types, mask); m.Backward(1.0 / (B * T));
        var (l1, _) = fx.Forward(ids, tg, B, T, types, mask); fx.Backward(1.0 / (B * T));
        Assert.True(Math.Abs(l0 - l1) < 1e-12 * Math.Abs(l0));
        for (int k = 0; k < m.Logits.Length; k++) Assert.True(Math.Abs(m.Logits.Data[k] - fx.Logits.Data[k]) < 1e-12);
        for (int t = 0; t < m.Parameters.Count; t++)
        {
            var p = m.Parameters[t]; var q = fx.Parameters[t];
            c.Fixed.TryGetValue(p.Name, out var f);
            for (int i = 0; i < p.Grad.Length; i++)
                if (f is null || !f.ContainsKey(i))
                    Assert.True(Math.Abs(p.Grad.Data[i] - q.Grad.Data[i]) < 1e-12, $"{p.Name}[{i}]: {p.Grad.Data[i]} vs {q.Grad.Data[i]}");
        }
        // The identity blocks (stored [3d, d]: W_Q^h[P_k, j] = entry (h·d_h + j, P_k)) get no gradient from the skip kernel.
        int dh = 8 / heads;
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < heads; h++)
                foreach (int r in c.QPivots[l][h])
                    for (int j = 0; j < dh; j++)
                    {
                        Assert.Equal(0.0, fx.Layers[l].Attn.Wqkv.Grad.Data[(h * dh + j) * 8 + r]);
                        Assert.Equal(0.0, fx.Layers[l].Attn.Wqkv.Grad.Data[(16 + h * dh + j) * 8 + r]);
                    }
    }

    [Fact]
    public void GaugeFixedBertTrainingKeepsFixedEntriesAndResumesExactly()
    {
        var data = MlmSources.Create("synthetic:induction", 1, null);
        var cfg = new BertConfig(data.VocabSize, 16, 16, 2, 2, 24);
        Bert<double> Make() { var g = new Bert<double>(cfg, CpuBackend<double>.Instance); g.InitializeRandom(3); return g; }
        TrainConfig Conf(int steps) => new(steps, 4, 16, 3e-3, WarmupSteps: 0, MinLrFraction: 1.0, EvalEvery: 2, EvalBatches: 1, Seed: 1,
            Optimizer: new OptimizerConfig(OptimizerKind.AdamW, WeightDecay: 0));
        string Run(string name, int steps, bool resume)
        {
            string run = Path.Combine(dir, name);
            var m = Make();
            if (resume) ParamSet.From(MiniTransformer.IO.ModelFiles.Load(Trainer<double>.FindCheckpoint(run)!, CpuBackend<double>.Instance).Parameters).CopyTo(m.Parameters);
            var tr = new Trainer<double>(m, data, Conf(steps), CpuBackend<double>.Instance, run);
            MiniTransformer.Cli.Commands.GaugeFixCommands.SetupTraining(m, run, resume, Conf(steps), null, quiet: true)(tr);
            if (resume) tr.Resume(Trainer<double>.FindCheckpoint(run)!);
            tr.Run();
            var fixedCount = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(run, "gauge.json")))!["fixed_count"]!.GetValue<long>();
            Assert.Equal(2 * (m.Parameters.Sum(p => (long)p.Value.Length) - fixedCount), tr.Optimizer.StateScalars);
            return run;
        }
        string a = Run("straight", 4, false);
        Run("resumed", 2, false);
        string b = Run("resumed", 4, true);
        var ma = MiniTransformer.IO.ModelFiles.Load(Path.Combine(a, "checkpoint"), CpuBackend<double>.Instance);
        var mb = MiniTransformer.IO.ModelFiles.Load(Path.Combine(b, "checkpoint"), CpuBackend<double>.Instance);
        foreach (var (p, q) in ma.Parameters.Zip(mb.Parameters)) Assert.Equal(p.Value.Data, q.Value.Data);
        var (fixedEntries, _, _) = CanonicalForm.ReadJson(System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(a, "gauge.json")))!.AsObject());
        var byName = ma.Parameters.ToDictionary(p => p.Name);
        foreach (var (t, e) in fixedEntries) foreach (var (i, v) in e) Assert.Equal(v, byName[t].Value.Data[i]);
        Assert.Contains(ma.Parameters.Zip(Make().Parameters), t => !t.First.Value.Data.SequenceEqual(t.Second.Value.Data));
    }
}
