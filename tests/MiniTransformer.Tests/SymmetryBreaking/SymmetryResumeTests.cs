using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;
using Xunit;

namespace MiniTransformer.Tests.SymmetryBreaking;

public class SymmetryResumeTests
{
    static float[] Train(string dir, int steps, bool resume, OptimizerKind kind)
    {
        var ops = CpuBackend<float>.Instance;
        var data = DataSources.Create("synthetic:induction", 3);
        var cfg0 = new Gpt2Config(data.VocabSize, 16, 16, 2, 2);
        var cfg = cfg0 with { SymmetryBreaking = SymmetryBreakingConfig.Create(cfg0.HeadDim, true, true), MlpActivation = MlpActivation.Prelu };
        bool ecd = kind == OptimizerKind.Ecd;
        var tc = new TrainConfig(6, 2, 16, ecd ? 1.0 : 1e-3, ecd ? 0 : 2, MinLrFraction: ecd ? 1.0 : 0.1, EvalEvery: 3, EvalBatches: 1, Seed: 5,
            Optimizer: new OptimizerConfig(kind, EcdF0: 0));
        ILanguageModel<float> model;
        string? ck = resume ? Trainer<float>.FindCheckpoint(dir) : null;
        if (ck is not null) model = ModelFiles.Load(ck, ops);
        else { var g = new Gpt2<float>(cfg, ops); g.InitializeRandom(5); model = g; }
        var t = new Trainer<float>(model, data, tc with { Steps = steps }, ops, dir);
        if (ck is not null) t.Resume(ck);
        t.Run();
        return [.. model.Parameters.SelectMany(p => p.Value.Data)];
    }

    [Theory]
    [InlineData(OptimizerKind.AdamW)]
    [InlineData(OptimizerKind.Ecd)]
    [InlineData(OptimizerKind.Sgdm)]
    public void Resumed_run_with_sampled_biases_is_bit_identical(OptimizerKind kind)
    {
        string a = Path.Combine(Path.GetTempPath(), "mt-symr-" + Guid.NewGuid().ToString("N")), b = a + "b";
        try
        {
            var straight = Train(a, 6, false, kind);
            Train(b, 3, false, kind);
            var resumed = Train(b, 6, true, kind);
            Assert.Equal(straight, resumed);
        }
        finally { foreach (var d in new[] { a, b }) if (Directory.Exists(d)) Directory.Delete(d, true); }
    }
}
