using MathNet.Numerics.LinearAlgebra;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.Gauge;
using MiniTransformer.Models;
using MiniTransformer.Tests.Gauge;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.GaugeFixed;

/// <summary>mt gauge fix / diff / train --gauge-fixed: function preserved, counts, transversality, skip kernels, free-only training.</summary>
public sealed class GaugeFixTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), "mt-gaugefix-" + Guid.NewGuid().ToString("N"));
    public void Dispose() { if (Directory.Exists(dir)) Directory.Delete(dir, true); }

    static double Dev(Gpt2<double> m, GaugeArch a, ParamSet p0, ParamSet p1)
    {
        var (ids, B, T) = Invariance.RandomInputs(a, 3);
        var y0 = Invariance.LogProbs(m, a, p0, CpuBackend<double>.Instance, ids, B, T);
        var y1 = Invariance.LogProbs(m, a, p1, CpuBackend<double>.Instance, ids, B, T);
        return Invariance.Deviation(y0, y1).MaxRel;
    }

    [Theory]
    [InlineData(4, 2, 6, 7, 3, 2, true)]
    [InlineData(6, 3, 10, 29, 8, 2, false)]
    [InlineData(5, 1, 7, 8, 2, 1, true)]     // one head: writer1 and lnmean kept
    [InlineData(8, 2, 5, 11, 6, 1, false)]
    public void FixPreservesTheFunctionAndFixesTheAnalyticCount(int d, int H, int F, int V, int T, int L, bool tied)
    {
        var m = GaugeTestModels.Generic(GaugeTestModels.Config(d, H, F, V, T, L, tied));
        var a = GaugeArch.ForGpt2(m.Config);
        var p0 = ParamSet.From(m.Parameters);
        var c = Canonical.Fix(a, p0);
        Assert.True(Dev(m, a, p0, c.Params) < 1e-12);
        var an = FlatDirections.Analytic(a, p0.Count);
        foreach (var (kind, n) in c.Removed) Assert.Equal(an.ByKind[kind], n);
        int expected = an.Analytic - an.ByKind["residual"] - (H == 1 ? an.ByKind["writer1"] + an.ByKind["lnmean"] : 0);
        Assert.Equal(expected, c.FixedCount);
        Assert.Equal(p0.Count - c.FixedCount, c.FreeCount);
        if (tied && H >= 2) Assert.Equal(an.Analytic, c.FixedCount);   // tied, ≥ 2 heads: every flat direction removed
        foreach (var (t, e) in c.Fixed) foreach (var (i, v) in e) Assert.Equal(v, c.Params[t][i]);
        // Canonicalising a canonical model changes nothing.
        var again = Canonical.Fix(a, c.Params);
        Assert.True(again.Params.Minus(c.Params).Norm() < 1e-12 * c.Params.Norm());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DiffModuloTheGaugeIsZeroForAPureGaugeTransform(bool tied)
    {
        var m = GaugeTestModels.Generic(GaugeTestModels.Config(6, 3, 10, 29, 8, 2, tied));
        var a = GaugeArch.ForGpt2(m.Config);
        var p0 = ParamSet.From(m.Parameters);
        var p1 = p0.Clone();
        var rng = new Random(5);
        foreach (var k in GaugeKind.Parse("qk,kbias,ov,vbias,lngain,lnbias,lnmean,writer1,embshift,mlp")) k.Apply(a, p1, rng);
        Assert.True(p1.Minus(p0).Norm() > 0.1 * p0.Norm());
        var c0 = Canonical.Fix(a, p0); var c1 = Canonical.Fix(a, p1);
        Assert.True(c1.Params.Minus(c0.Params).Norm() < 1e-12 * c0.Params.Norm(), $"{c1.Params.Minus(c0.Params).Norm():E2}");
    }

    [Fact]
    public void FreeParametersOfATiedModelHaveNoFlatDirectionLeft()
    {
        // Transversality: the fixed entries meet each orbit once, so the Jacobian restricted to the free columns has
        // full column rank (for a tied GPT-2 with ≥ 2 heads every flat direction is removed).
        var m = GaugeTestModels.Generic(GaugeTestModels.Config(4, 2, 6, 7, 3, 2, true));
        var a = GaugeArch.ForGpt2(m.Config);
        AssertFreeParametersHaveNoFlatDirection(m, a);
    }

    /// <summary>
    /// Canonicalises <paramref name="m"/>, then: the Jacobian restricted to the free columns has full column rank, while
    /// the full Jacobian has exactly the analytic number of null directions.
    /// </summary>
    internal static void AssertFreeParametersHaveNoFlatDirection(ILanguageModel<double> m, GaugeArch a)
    {
        var c = Canonical.Fix(a, ParamSet.From(m.Parameters));
        c.Params.CopyTo(m.Parameters);
        var J = FlatDirections.Jacobian(m, 3 * c.Params.Count, seed: 1);
        var freeCols = new List<int>();
        for (int t = 0; t < c.Params.Names.Length; t++)
        {
            c.Fixed.TryGetValue(c.Params.Names[t], out var f);
            for (int i = 0; i < c.Params.Data[t].Length; i++) if (f is null || !f.ContainsKey(i)) freeCols.Add(c.Params.Offsets[t] + i);
        }
        var Jf = Matrix<double>.Build.Dense(J.RowCount, freeCols.Count, (r, k) => J[r, freeCols[k]]);
        var s = Jf.Svd(false).S;
        Assert.True(s[^1] / s[0] > 1e-9, $"smallest/largest singular value {s[^1] / s[0]:E2}");
        var sAll = J.Svd(false).S;
        Assert.Equal(FlatDirections.Analytic(a, c.Params.Count).Analytic, sAll.Count(x => x / sAll[0] < 1e-9));
    }

    [Theory]
    [InlineData(2, true)]
    [InlineData(4, true)]
    [InlineData(1, true)]    // one head: the identity is all of W_Q and W_V (no free rows)
    [InlineData(2, false)]   // per-head pivots: the per-head gather path
    [InlineData(4, false)]
    public void SkipKernelsMatchTheFullProjectionAndGiveFixedEntriesNoGradient(int heads, bool shared)
    {
        var cfg = GaugeTestModels.Config(8, heads, 12, 11, 6, 2, true);
        var m = GaugeTestModels.Generic(cfg);
        var a = GaugeArch.ForGpt2(cfg);
        var c = Canonical.Fix(a, ParamSet.From(m.Parameters), sharedPivots: shared);
        Assert.True(Dev(m, a, ParamSet.From(m.Parameters), c.Params) < 1e-12);
        c.Params.CopyTo(m.Parameters);
        var fx = new Gpt2<double>(cfg, CpuBackend<double>.Instance);
        c.Params.CopyTo(fx.Parameters);
        GaugeFixedTraining.InstallKernels(fx, c.QPivots, c.VPivots);
        var rng = new Random(2);
        int B = 3, T = 6;
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        var tg = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        var (l0, _) = m.Forward(ids, tg, B, T); m.Backward(1.0 / (B * T));
        var (l1, _) = fx.Forward(ids, tg, B, T); fx.Backward(1.0 / (B * T));
        Assert.True(Math.Abs(l0 - l1) < 1e-12 * Math.Abs(l0));
        for (int k = 0; k < m.Logits.Length; k++) Assert.True(Math.Abs(m.Logits.Data[k] - fx.Logits.Data[k]) < 1e-12);
        for (int t = 0; t < m.Parameters.Count; t++)
        {
            var p = m.Parameters[t]; var q = fx.Parameters[t];
            c.Fixed.TryGetValue(p.Name, out var f);
            bool qkv = p.Name.Contains("c_attn");
            for (int i = 0; i < p.Grad.Length; i++)
            {
                bool isFixed = f is not null && f.ContainsKey(i);
                if (qkv && isFixed && !p.Name.EndsWith("weight") ) Assert.Equal(0.0, q.Grad.Data[i]);   // b_K, b_V
                if (!isFixed) Assert.True(Math.Abs(p.Grad.Data[i] - q.Grad.Data[i]) < 1e-12, $"{p.Name}[{i}]: {p.Grad.Data[i]} vs {q.Grad.Data[i]}");
            }
        }
        // The identity blocks get no gradient at all from the skip kernel.
        foreach (var (l, ph) in c.QPivots.Select((x, i) => (i, x)))
            for (int h = 0; h < heads; h++)
                foreach (int r in ph[h]) for (int j = 0; j < 8 / heads; j++)
                        Assert.Equal(0.0, fx.Layers[l].Attn.Wqkv.Grad.Data[r * 24 + h * (8 / heads) + j]);
    }

    [Fact]
    public void GaugeFixedTrainingKeepsFixedEntriesStateOnlyForFreeOnesAndResumesExactly()
    {
        var data = DataSources.Create("synthetic:induction", 1);
        var cfg = new Gpt2Config(data.VocabSize, 16, 16, 2, 2, 1e-5, 24, true);
        Gpt2<double> Make() { var g = new Gpt2<double>(cfg, CpuBackend<double>.Instance); g.InitializeRandom(3); return g; }
        TrainConfig Conf(int steps) => new(steps, 4, 16, 3e-3, WarmupSteps: 0, MinLrFraction: 1.0, EvalEvery: 2, EvalBatches: 1, Seed: 1,
            Optimizer: new OptimizerConfig(OptimizerKind.AdamW, WeightDecay: 0));
        string Run(string name, int steps, bool resume, Gpt2<double>? start = null)
        {
            string run = Path.Combine(dir, name);
            var m = start ?? Make();
            if (resume) MiniTransformer.IO.ModelFiles.Load(Trainer<double>.FindCheckpoint(run)!, CpuBackend<double>.Instance).Parameters
                .Zip(m.Parameters).ToList().ForEach(t => t.First.Value.Data.CopyTo(t.Second.Value.Data, 0));
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
        // Fixed entries still hold their values after training; the free ones moved.
        var g = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(a, "gauge.json")))!.AsObject();
        var (fixedEntries, _, _) = CanonicalForm.ReadJson(g);
        var start = Make();
        foreach (var p in ma.Parameters)
        {
            fixedEntries.TryGetValue(p.Name, out var f);
            if (f is not null) foreach (var (i, v) in f) Assert.Equal(v, p.Value.Data[i]);
        }
        Assert.Contains(ma.Parameters.Zip(start.Parameters), t => !t.First.Value.Data.SequenceEqual(t.Second.Value.Data));
    }
}
