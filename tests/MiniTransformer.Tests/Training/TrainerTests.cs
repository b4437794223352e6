using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Training;

public sealed class TrainerTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-train-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    static readonly Gpt2Config Tiny = new(26, 32, 16, 2, 2, NInner: 24);
    static TrainConfig Config(int steps) => new(steps, Batch: 4, Seq: 32, LearningRate: 3e-3, WarmupSteps: 2, EvalEvery: 3, EvalBatches: 2, Seed: 7);

    static Gpt2<float> NewModel()
    {
        var m = new Gpt2<float>(Tiny, CpuBackend<float>.Instance);
        m.InitializeRandom(7);
        return m;
    }

    [Fact]
    public void ResumedRunReplaysTheUninterruptedRunBitForBit()
    {
        var data = DataSources.Create("synthetic:induction", 7);
        var straight = new Trainer<float>(NewModel(), data, Config(8), CpuBackend<float>.Instance, Path.Combine(dir, "a"));
        straight.Run();

        // Same run, stopped after the checkpoint at step 3 ...
        string b = Path.Combine(dir, "b");
        var first = new Trainer<float>(NewModel(), data, Config(8), CpuBackend<float>.Instance, b);
        using var cts = new CancellationTokenSource();
        first.Evaluated += _ => cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => first.Run(cts.Token));
        Assert.Equal(3, first.History.Count);

        // ... then resumed from disk in a fresh model and trainer.
        string ck = Trainer<float>.FindCheckpoint(b)!;
        var resumed = new Trainer<float>(ModelFiles.LoadGpt2(ck, CpuBackend<float>.Instance), data, Config(8), CpuBackend<float>.Instance, b);
        resumed.Resume(ck);
        Assert.Equal(3, resumed.StartStep);
        resumed.Run();

        var expected = straight.History.Skip(3).Select(h => (h.Step, h.Loss, h.GradNorm)).ToList();
        var actual = resumed.History.Select(h => (h.Step, h.Loss, h.GradNorm)).ToList();
        Assert.Equal(expected, actual);   // exact equality of doubles: bit-identical
        Assert.True(File.ReadAllLines(Path.Combine(b, "metrics.jsonl")).Length >= 8);
    }

    [Fact]
    public void SameSeedGivesIdenticalLossesAndWeights()
    {
        var data = DataSources.Create("synthetic:cfg", 3);
        var m1 = NewModel();
        var m2 = NewModel();
        var t1 = new Trainer<float>(m1, data, Config(4), CpuBackend<float>.Instance, Path.Combine(dir, "x"));
        var t2 = new Trainer<float>(m2, data, Config(4), CpuBackend<float>.Instance, Path.Combine(dir, "y"));
        t1.Run();
        t2.Run();
        Assert.Equal(t1.History.Select(h => h.Loss), t2.History.Select(h => h.Loss));
        for (int i = 0; i < m1.Parameters.Count; i++) Assert.Equal(m1.Parameters[i].Value.Data, m2.Parameters[i].Value.Data);
    }

    [Fact]
    public void TrainingLowersTheLossAndTheScheduleWarmsUpThenDecays()
    {
        var data = DataSources.Create("synthetic:cfg", 1);
        var t = new Trainer<float>(NewModel(), data, Config(30) with { EvalEvery = 30 }, CpuBackend<float>.Instance, Path.Combine(dir, "l"));
        t.Run();
        Assert.True(t.History[^1].Loss < t.History[0].Loss - 0.3, $"loss {t.History[0].Loss} -> {t.History[^1].Loss}");
        var c = Config(30);
        Assert.Equal(1.5e-3, c.LearningRateAt(0), 12);
        Assert.Equal(3e-3, c.LearningRateAt(2), 12);
        Assert.Equal(3e-4, c.LearningRateAt(29), 12);
        Assert.True(c.LearningRateAt(10) > c.LearningRateAt(20));
    }

    [Fact]
    public void GradientAccumulationOfTwoHalvesEqualsOneBatchOnEqualHalves()
    {
        // Two micro-batches of B=2 average their losses; on a model and data where both halves score the same
        // number of tokens (synthetic:cfg scores every position) the step equals the mean-loss gradient of B=4.
        var data = DataSources.Create("synthetic:cfg", 5);
        var m = NewModel();
        var opt = new Optimizer<float>(m.Parameters, new OptimizerConfig(), CpuBackend<float>.Instance);
        var ids = new int[4 * 32];
        var tg = new int[4 * 32];
        data.GetBatch(Split.Train, 0, 2, 32, ids.AsSpan(0, 64), tg.AsSpan(0, 64));
        data.GetBatch(Split.Train, 1, 2, 32, ids.AsSpan(64), tg.AsSpan(64));
        opt.ZeroGrad();
        var (s, n) = m.Forward(ids, tg, 4, 32);
        m.Backward(1.0 / n);
        double full = opt.GradNorm();
        opt.ZeroGrad();
        for (int half = 0; half < 2; half++)
        {
            var (s2, n2) = m.Forward(ids[(half * 64)..((half + 1) * 64)], tg[(half * 64)..((half + 1) * 64)], 2, 32);
            m.Backward(1.0 / (2 * n2));
        }
        Assert.Equal(full, opt.GradNorm(), 4);
    }
}
