using System.Text.Json;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.Gauge;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Gauge;

/// <summary>Conserved quantities during training: the Trainer's metrics hook, mt train --track-conserved, SGD vs AdamW.</summary>
[Collection("cli")]
public sealed class GaugeConservedTrainingTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-conserved-").FullName;
    public void Dispose() => Directory.Delete(dir, true);

    double FinalDrift(OptimizerKind kind, double lr, double tau, string name)
    {
        var ops = CpuBackend<double>.Instance;
        var data = DataSources.Create("synthetic:induction", 1);
        var model = new Gpt2<double>(new Gpt2Config(data.VocabSize, 8, 8, 1, 2, 1e-5, 16, true), ops);
        model.InitializeRandom(1);
        int steps = (int)Math.Round(tau / lr);
        var config = new TrainConfig(steps, 2, 8, lr, WarmupSteps: 0, MinLrFraction: 1.0, EvalEvery: steps, EvalBatches: 1, Seed: 1,
            Optimizer: new OptimizerConfig(kind, WeightDecay: 0, GradClip: 0));
        var tracker = new ConservedTracker<double>(model);
        var trainer = new Trainer<double>(model, data, config, ops, Path.Combine(dir, name));
        int calls = 0;
        trainer.StepMetrics += (step, line) => { calls++; Assert.Equal(calls, step); tracker.AddTo(line); };
        trainer.Run();
        Assert.Equal(steps, calls);
        var lines = File.ReadAllLines(Path.Combine(dir, name, Trainer<double>.MetricsFile)).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("loss", out _)).ToList();
        Assert.Equal(steps, lines.Count);
        Assert.All(lines, e => Assert.True(e.GetProperty("conserved_drift").GetDouble() >= 0));
        return tracker.Drift().Total;
    }

    [Fact]
    public void SgdDriftVanishesWithTheLearningRateAdamWDoesNot()
    {
        // The same training time τ = lr·steps: SGD approaches gradient flow (drift ∝ lr); AdamW's drift stays.
        double s1 = FinalDrift(OptimizerKind.Sgd, 0.01, 0.2, "s1"), s2 = FinalDrift(OptimizerKind.Sgd, 0.001, 0.2, "s2");
        Assert.True(s2 < 0.3 * s1, $"SGD drift {s1:E2} at lr 0.01, {s2:E2} at lr 0.001");
        double a1 = FinalDrift(OptimizerKind.AdamW, 0.01, 0.2, "a1"), a2 = FinalDrift(OptimizerKind.AdamW, 0.001, 0.2, "a2");
        // AdamW at the same rates and time: the quantities move by O(1) (about 3 and 1.2) — 10⁴ times SGD's drift.
        Assert.True(a2 > 0.1 && a2 > 1e4 * s2 && a1 > 1e4 * s1, $"AdamW drift {a1:E2} at lr 0.01, {a2:E2} at lr 0.001 (SGD {s1:E2}, {s2:E2})");
    }

    static (int Code, string Out, string Err) Run(params string[] args) => InProcessCli.Run(args);

    [Theory]
    [InlineData("gpt2")]
    [InlineData("bert")]
    public void TrainTrackConservedLogsTheDriftAndResumesFromTheSameReference(string arch)
    {
        string run = Path.Combine(dir, arch);
        string[] common = ["train", "--arch", arch, "--layers", "1", "--heads", "2", "--dim", "8", "--ctx", "16", "--data", "synthetic:induction",
            "--batch", "2", "--seq", "16", "--optimizer", "sgd", "--lr", "0.01", "--eval-every", "2", "--eval-batches", "1",
            "--out", run, "--track-conserved", "--dtype", "f64"];
        var (code, o, err) = Run([.. common, "--steps", "2"]);
        Assert.True(code == 0, err + o);
        var c0 = File.ReadAllText(Path.Combine(run, ConservedTracker<double>.FileName));
        (code, o, err) = Run([.. common, "--steps", "4", "--resume"]);
        Assert.True(code == 0, err + o);
        Assert.Equal(c0, File.ReadAllText(Path.Combine(run, ConservedTracker<double>.FileName)));
        var steps = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("loss", out _)).ToList();
        Assert.Equal(4, steps.Count);
        foreach (var key in new[] { "conserved_drift", "conserved_drift_qk", "conserved_drift_ov", "conserved_drift_max_head" })
            Assert.All(steps, e => Assert.True(e.GetProperty(key).GetDouble() is >= 0 and < 1));
        // Drift accumulates from the start, not from the resume point.
        Assert.True(steps[3].GetProperty("conserved_drift").GetDouble() > steps[1].GetProperty("conserved_drift").GetDouble());
    }
}
