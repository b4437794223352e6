using System.Numerics;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tensors;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Robustness;

/// <summary>A GPT-2 whose loss or gradient turns NaN or infinite on demand.</summary>
public sealed class FaultyModel(Gpt2<float> inner) : ILanguageModel<float>
{
    public enum Fault { None, NaNLoss, InfLoss, InfGradient, NaNGradient }
    public Fault Next { get; set; }
    public string Arch => inner.Arch;
    public int VocabSize => inner.VocabSize;
    public string ConfigJson => inner.ConfigJson;
    public string Describe() => inner.Describe();
    public int MaxSequence => inner.MaxSequence;
    public IReadOnlyList<Parameter<float>> Parameters => inner.Parameters;
    public Tensor<float> Logits => inner.Logits;

    public (double LossSum, int Count) Forward(int[] ids, int[]? targets, int B, int T)
    {
        var (sum, n) = inner.Forward(ids, targets, B, T);
        return Next switch
        {
            Fault.NaNLoss => (double.NaN, n),
            Fault.InfLoss => (double.PositiveInfinity, n),
            _ => (sum, n),
        };
    }

    public void Backward(double scale)
    {
        inner.Backward(scale);
        if (Next == Fault.InfGradient) inner.Parameters[3].Grad.Span[1] = float.PositiveInfinity;
        if (Next == Fault.NaNGradient) inner.Parameters[0].Grad.Span[0] = float.NaN;
    }
}

/// <summary>NaN and infinite losses and gradients stop training with a clear message and keep the last good checkpoint.</summary>
public sealed class TrainingFaultTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-fault-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    static readonly Gpt2Config Tiny = new(26, 16, 16, 1, 2, NInner: 24);
    static TrainConfig Config => new(12, Batch: 2, Seq: 16, LearningRate: 3e-3, WarmupSteps: 2, EvalEvery: 3, EvalBatches: 1, Seed: 7);

    static Gpt2<float> NewModel()
    {
        var m = new Gpt2<float>(Tiny, CpuBackend<float>.Instance);
        m.InitializeRandom(7);
        return m;
    }

    [Theory]
    [InlineData(FaultyModel.Fault.NaNLoss, "loss is NaN at step 5")]
    [InlineData(FaultyModel.Fault.InfLoss, "loss is Infinity at step 5")]
    [InlineData(FaultyModel.Fault.InfGradient, "gradient norm is Infinity at step 5")]
    [InlineData(FaultyModel.Fault.NaNGradient, "gradient norm is NaN at step 5")]
    public void AFaultStopsTheRunAndKeepsTheLastGoodCheckpoint(FaultyModel.Fault fault, string expect)
    {
        var data = DataSources.Create("synthetic:induction", 7);
        string run = Path.Combine(dir, fault.ToString());
        var model = new FaultyModel(NewModel());
        var trainer = new Trainer<float>(model, data, Config, CpuBackend<float>.Instance, run);
        trainer.Stepped += r => { if (r.Step == 4) model.Next = fault; };
        var e = Assert.Throws<InputException>(() => trainer.Run());
        Assert.Contains("training diverged", e.Message);
        Assert.Contains(expect, e.Message);
        Assert.Contains("(step 3), is kept", e.Message);

        // The checkpoint on disk is the step-3 one, finite, and equal to a clean run's step-3 checkpoint.
        string ck = Trainer<float>.FindCheckpoint(run)!;
        Assert.Contains(Path.Combine(run, "checkpoint"), e.Message);
        var clean = new Trainer<float>(NewModel(), data, Config, CpuBackend<float>.Instance, Path.Combine(dir, "clean" + fault));
        using var cts = new CancellationTokenSource();
        clean.Evaluated += _ => cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => clean.Run(cts.Token));
        var a = SafeTensors.Read(Path.Combine(ck, ModelFiles.WeightsFile));
        var b = SafeTensors.Read(Path.Combine(Trainer<float>.FindCheckpoint(Path.Combine(dir, "clean" + fault))!, ModelFiles.WeightsFile));
        Assert.Equal(b.Tensors.Select(t => t.Bytes), a.Tensors.Select(t => t.Bytes));
        Assert.All(a.Tensors, t => Assert.All(t.ToFloats(), x => Assert.True(float.IsFinite(x))));
    }

    [Fact]
    public void NonFiniteWeightsBeforeACheckpointAreNeverSaved()
    {
        var data = DataSources.Create("synthetic:induction", 7);
        string run = Path.Combine(dir, "weights");
        var model = NewModel();
        var trainer = new Trainer<float>(model, data, Config, CpuBackend<float>.Instance, run);
        // After step 6's update, before its evaluation and checkpoint, a weight becomes infinite.
        trainer.Stepped += r => { if (r.Step == 6) model.Wte.Value.Span[5] = float.PositiveInfinity; };
        var e = Assert.Throws<InputException>(() => trainer.Run());
        Assert.Contains("after step 6", e.Message);
        Assert.Contains("(step 3), is kept", e.Message);
        var state = SafeTensors.Read(Path.Combine(Trainer<float>.FindCheckpoint(run)!, "trainer_state.safetensors"));
        Assert.Equal("3", state.Metadata["step"]);
    }

    [Fact]
    public void DivergenceBeforeAnyCheckpointSaysSo()
    {
        var data = DataSources.Create("synthetic:induction", 7);
        var model = new FaultyModel(NewModel()) { Next = FaultyModel.Fault.NaNLoss };
        var trainer = new Trainer<float>(model, data, Config, CpuBackend<float>.Instance, Path.Combine(dir, "early"));
        var e = Assert.Throws<InputException>(() => trainer.Run());
        Assert.Contains("loss is NaN at step 1", e.Message);
        Assert.Contains("no checkpoint had been written yet", e.Message);
    }

    [Fact]
    public void ResumeRefusesADifferentDataStreamAndABrokenState()
    {
        var data = DataSources.Create("synthetic:induction", 7);
        string run = Path.Combine(dir, "mismatch");
        new Trainer<float>(NewModel(), data, Config with { Steps = 3 }, CpuBackend<float>.Instance, run).Run();
        string ck = Trainer<float>.FindCheckpoint(run)!;
        var t = new Trainer<float>(NewModel(), data, Config with { Batch = 3 }, CpuBackend<float>.Instance, run);
        Assert.Contains("--batch 2", Assert.Throws<InputException>(() => t.Resume(ck)).Message);
        t = new Trainer<float>(NewModel(), data, Config with { Seed = 8 }, CpuBackend<float>.Instance, run);
        Assert.Contains("--seed 7", Assert.Throws<InputException>(() => t.Resume(ck)).Message);
        t = new Trainer<float>(NewModel(), DataSources.Create("synthetic:cfg", 7), Config, CpuBackend<float>.Instance, run);
        Assert.Contains("--data synthetic:induction", Assert.Throws<InputException>(() => t.Resume(ck)).Message);

        // A state file without its step, or with a step that is not a number, is named.
        string state = Path.Combine(ck, "trainer_state.safetensors");
        var f = SafeTensors.Read(state);
        foreach (var (key, value) in new[] { ("step", (string?)null), ("step", "three"), ("optimizer_step", "-1") })
        {
            var meta = f.Metadata.ToDictionary();
            if (value is null) meta.Remove(key); else meta[key] = value;
            SafeTensors.Write(state, f.Tensors, meta);
            t = new Trainer<float>(NewModel(), data, Config, CpuBackend<float>.Instance, run);
            var e = Assert.Throws<InputException>(() => t.Resume(ck));
            Assert.Contains("trainer_state.safetensors", e.Message);
            Assert.Contains(key, e.Message);
        }
    }

    [Fact]
    public void ResumeDropsMetricsLinesBeyondTheCheckpointAndACutLine()
    {
        var data = DataSources.Create("synthetic:induction", 7);
        string run = Path.Combine(dir, "metrics");
        new Trainer<float>(NewModel(), data, Config with { Steps = 3 }, CpuBackend<float>.Instance, run).Run();
        // As if the killed run had got to step 5 and was cut in the middle of a line.
        File.AppendAllText(Path.Combine(run, Trainer<float>.MetricsFile), "{\"step\":4,\"loss\":1.0}\n{\"step\":5,\"loss\":1.0}\n{\"step\":6,\"lo");
        string ck = Trainer<float>.FindCheckpoint(run)!;
        var t = new Trainer<float>(ModelFiles.LoadGpt2(ck, CpuBackend<float>.Instance), data, Config with { Steps = 6 }, CpuBackend<float>.Instance, run);
        t.Resume(ck);
        t.Run();
        var steps = File.ReadAllLines(Path.Combine(run, Trainer<float>.MetricsFile))
            .Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!.AsObject()).Where(o => o["loss"] is not null).Select(o => (int)o["step"]!).ToList();
        Assert.Equal([1, 2, 3, 4, 5, 6], steps);
    }

    [Fact]
    public void AKillInTheRenameWindowLeavesTheOldCheckpointWhichResumesExactly()
    {
        var data = DataSources.Create("synthetic:induction", 7);
        string straight = Path.Combine(dir, "straight"), run = Path.Combine(dir, "window");
        var a = new Trainer<float>(NewModel(), data, Config with { Steps = 6 }, CpuBackend<float>.Instance, straight);
        a.Run();
        var b = new Trainer<float>(NewModel(), data, Config with { Steps = 6 }, CpuBackend<float>.Instance, run);
        using var cts = new CancellationTokenSource();
        b.Evaluated += _ => cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => b.Run(cts.Token));
        // The state a kill between "checkpoint -> checkpoint.old" and "checkpoint.tmp -> checkpoint" leaves behind.
        Directory.Move(Path.Combine(run, "checkpoint"), Path.Combine(run, "checkpoint.old"));
        Directory.CreateDirectory(Path.Combine(run, "checkpoint.tmp"));
        File.WriteAllBytes(Path.Combine(run, "checkpoint.tmp", ModelFiles.WeightsFile), [1, 2, 3]);
        string ck = Trainer<float>.FindCheckpoint(run)!;
        Assert.EndsWith("checkpoint.old", ck);
        var c = new Trainer<float>(ModelFiles.LoadGpt2(ck, CpuBackend<float>.Instance), data, Config with { Steps = 6 }, CpuBackend<float>.Instance, run);
        c.Resume(ck);
        c.Run();
        Assert.Equal(a.History.Skip(3).Select(h => (h.Step, h.Loss)), c.History.Select(h => (h.Step, h.Loss)));
        Assert.False(Directory.Exists(Path.Combine(run, "checkpoint.old")));
        Assert.False(Directory.Exists(Path.Combine(run, "checkpoint.tmp")));
    }
}
