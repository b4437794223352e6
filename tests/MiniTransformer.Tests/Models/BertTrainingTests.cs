using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Models;

/// <summary>BERT under the shared Trainer: masked-LM steps reduce the loss, and a resumed run replays bit for bit.</summary>
public sealed class BertTrainingTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-bert-train-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    static TrainConfig Config(int steps) => new(steps, Batch: 4, Seq: 24, LearningRate: 3e-3, WarmupSteps: 2, EvalEvery: 3, EvalBatches: 2, Seed: 7);

    static Bert<float> NewModel(int vocab)
    {
        var m = new Bert<float>(new BertConfig(vocab, 24, 16, 2, 2, 24, Pooler: true), CpuBackend<float>.Instance);
        m.InitializeRandom(7);
        return m;
    }

    [Fact]
    public void ResumedMaskedLmRunReplaysTheUninterruptedRunBitForBit()
    {
        var data = MlmSources.Create("synthetic:cfg", 7);
        var straight = new Trainer<float>(NewModel(data.VocabSize), data, Config(7), CpuBackend<float>.Instance, Path.Combine(dir, "a"));
        straight.Run();
        Assert.True(straight.History[^1].Loss < straight.History[0].Loss, "masked-LM loss did not go down");

        string b = Path.Combine(dir, "b");
        var first = new Trainer<float>(NewModel(data.VocabSize), data, Config(7), CpuBackend<float>.Instance, b);
        using var cts = new CancellationTokenSource();
        first.Evaluated += _ => cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => first.Run(cts.Token));

        string ck = Trainer<float>.FindCheckpoint(b)!;
        var model = ModelFiles.Load(ck, CpuBackend<float>.Instance);
        Assert.IsType<Bert<float>>(model);
        var resumed = new Trainer<float>(model, data, Config(7), CpuBackend<float>.Instance, b);
        resumed.Resume(ck);
        Assert.Equal(3, resumed.StartStep);
        resumed.Run();
        Assert.Equal(straight.History.Skip(3).Select(h => (h.Step, h.Loss, h.GradNorm)), resumed.History.Select(h => (h.Step, h.Loss, h.GradNorm)));
    }
}
