using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Robustness;

/// <summary>
/// Models that do not match their weights, inputs or data, and runs that cannot fit in memory, through the command line:
/// exit 2 and one error line naming the tensor, the id or the limit.
/// </summary>
[Collection("cli")]
public sealed class MismatchAndLimitTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-mismatch-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    string P(string name) => Path.Combine(dir, name);

    void Expect(string? file, string expect, string? output, params string[] args)
    {
        var o = CliHarness.Run(args);
        Assert.True(CliHarness.Violation(o, file, expect, output, long.MaxValue) is null, CliHarness.Violation(o, file, expect, output, long.MaxValue));
    }

    [Fact]
    public void WeightsThatDoNotMatchTheConfigNameTheTensor()
    {
        Seeds.WriteModel(P("model"));
        Seeds.WriteInput(P("in.safetensors"));
        string weights = Path.Combine(P("model"), ModelFiles.WeightsFile);
        var valid = SafeTensors.Read(weights);
        string[] forward = ["forward", "--model", P("model"), "--input", P("in.safetensors"), "--out", P("out.safetensors")];
        void With(IEnumerable<StTensor> tensors, string expect)
        {
            SafeTensors.Write(weights, tensors);
            Expect(ModelFiles.WeightsFile, expect, P("out.safetensors"), forward);
        }
        foreach (var t in valid.Tensors)
        {
            With(valid.Tensors.Where(x => x.Name != t.Name), $"missing tensor '{t.Name}'");
            var bigger = StTensor.FromFloats(t.Name, new float[t.ElementCount + t.Shape[^1]], [.. t.Shape.Select((d, i) => i == 0 ? d + (t.Shape.Length == 1 ? t.Shape[^1] : 1) : d)]);
            With(valid.Tensors.Select(x => x.Name == t.Name ? bigger : x), $"tensor '{t.Name}' has shape");
            With(valid.Tensors.Select(x => x.Name == t.Name ? StTensor.FromInt32s(t.Name, new int[t.ElementCount], t.Shape) : x), $"tensor '{t.Name}' has dtype I32");
        }
        With([.. valid.Tensors, StTensor.FromFloats("h.2.ln_1.weight", new float[8], 8)], "unknown tensor 'h.2.ln_1.weight'");
        With([.. valid.Tensors, StTensor.FromFloats("score.weight", new float[8], 8)], "unknown tensor 'score.weight'");
        // The buffers real checkpoints carry are skipped.
        SafeTensors.Write(weights, [.. valid.Tensors, StTensor.FromFloats("h.0.attn.bias", new float[25], 1, 1, 5, 5), StTensor.FromFloats("h.1.attn.masked_bias", [-1e4f])]);
        Assert.Equal(0, CliHarness.Run(forward).Code);
    }

    [Fact]
    public void InputsOutsideTheModelNameTheIdOrTheTensor()
    {
        Seeds.WriteModel(P("model"));
        string[] Forward(string input) => ["forward", "--model", P("model"), "--input", input, "--out", P("out.safetensors")];
        void Input(string expect, params StTensor[] tensors)
        {
            SafeTensors.Write(P("in.safetensors"), tensors);
            Expect(null, expect, P("out.safetensors"), Forward(P("in.safetensors")));
        }
        Input("input_ids[0, 2] = 11", StTensor.FromInt64s("input_ids", [1, 2, 11], 1, 3));
        Input("input_ids[1, 0] = -1", StTensor.FromInt64s("input_ids", [1, 2, 3, -1, 0, 0], 2, 3));
        Input("input_ids[0, 0] = 65535", StTensor.FromInt32s("input_ids", [65535], 1, 1));
        Input("does not fit in int32", StTensor.FromInt64s("input_ids", [1L << 40], 1, 1));
        Input("targets[0, 1] = 11", StTensor.FromInt64s("input_ids", [1, 2], 1, 2), StTensor.FromInt64s("targets", [3, 11], 1, 2));
        Input("targets[0, 0] = -2", StTensor.FromInt64s("input_ids", [1, 2], 1, 2), StTensor.FromInt64s("targets", [-2, 1], 1, 2));
        Input("'targets' has shape [2, 1]", StTensor.FromInt64s("input_ids", [1, 2], 1, 2), StTensor.FromInt64s("targets", [3, 1], 2, 1));
        Input("'input_ids' has dtype F32", StTensor.FromFloats("input_ids", [1f, 2f], 1, 2));
        Input("'input_ids' has shape [2]", StTensor.FromInt64s("input_ids", [1, 2], 2));
        Input("no tensor named 'input_ids'", StTensor.FromInt64s("ids", [1, 2], 1, 2));
        Input("n_positions=5", StTensor.FromInt64s("input_ids", [1, 2, 3, 4, 5, 6], 1, 6));   // longer than the context
        Input("every target is -100", StTensor.FromInt64s("input_ids", [1, 2], 1, 2), StTensor.FromInt64s("targets", [-100, -100], 1, 2));
        Input("token_type_ids", StTensor.FromInt64s("input_ids", [1, 2], 1, 2), StTensor.FromInt64s("token_type_ids", [0, 0], 1, 2));
    }

    [Fact]
    public void TrainingDataOrSequenceBeyondTheModelIsRefusedBeforeAnythingIsWritten()
    {
        Seeds.WriteModel(P("model"));   // vocabulary 11, context 5
        Expect(null, "needs a vocabulary of", null, "train", "--model", P("model"), "--data", "synthetic:induction", "--steps", "1", "--seq", "4", "--out", P("run"));
        Expect(null, "exceeds the model's context (5)", null, "train", "--model", P("model"), "--data", "synthetic:induction", "--vocab", "11", "--steps", "1", "--seq", "16", "--out", P("run"));
    }

    [Theory]
    [InlineData("--dim", "16384", "--layers", "1000", "--heads", "1", "parameters")]     // 3·10^12 parameters
    [InlineData("--dim", "1048576", "--layers", "1", "--heads", "1", "c_attn")]          // one tensor beyond an array
    [InlineData("--batch", "100000", "--seq", "64", "--dim", "64", "activations")]        // activations of a huge batch
    [InlineData("--batch", "2000000000", "--seq", "64", "--dim", "16", "activations")]    // B·T beyond int
    public void ARunThatCannotFitFailsUpFrontWithTheEstimateAndTheLimit(params string[] flags)
    {
        string expect = flags[^1];
        var o = CliHarness.Run(["train", "--data", "synthetic:induction", "--steps", "1", "--out", P("run"), .. flags[..^1]]);
        Assert.True(CliHarness.Violation(o, null, expect, null, 64 << 20) is null, CliHarness.Violation(o, null, expect, null, 64 << 20));
        if (expect != "c_attn")
        {
            Assert.Contains("more than the", o.Err);
            Assert.Contains(MemoryEstimate.Bytes(MemoryEstimate.AvailableBytes), o.Err);
        }
        Assert.False(Directory.Exists(Path.Combine(P("run"), "checkpoint")));
    }

    [Fact]
    public void TheEstimateCoversWhatATrainingStepReallyAllocates()
    {
        // A model where activations and logits dominate; the estimate must not be far below the truth.
        var cfg = new Gpt2Config(64, 64, 32, 2, 4, NInner: 96);
        var config = new TrainConfig(1, Batch: 8, Seq: 64, EvalEvery: 1, EvalBatches: 1);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        var model = new Gpt2<float>(cfg, MiniTransformer.Backends.Cpu.CpuBackend<float>.Instance);
        var trainer = new Trainer<float>(model, MiniTransformer.Data.DataSources.Create("synthetic:induction", 1), config,
            MiniTransformer.Backends.Cpu.CpuBackend<float>.Instance, P("estimate"));
        var estimate = MemoryEstimate.ForModel(model, config);
        trainer.Run();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        // Everything the run allocated (including checkpoint serialisation and other tests' garbage on other threads) is an
        // upper bound on what it held; the estimate of what is held must be of the same order.
        Assert.True(estimate.TotalBytes > 0.5 * (estimate.ParameterBytes * 4 + estimate.ActivationBytes), "estimate is inconsistent");
        Assert.True(estimate.TotalBytes < allocated * 1.5, $"estimate {estimate.TotalBytes:N0} vs allocated {allocated:N0}");
        Assert.True(estimate.ActivationBytes > 0.5 * (8 * 64 * 64 * 4 * 2), "logits and their gradient alone are 2·B·T·V floats");
        Assert.Throws<InputException>(() => estimate.EnsureFits("test", availableBytes: (long)(estimate.TotalBytes - 1)));
        estimate.EnsureFits("test", availableBytes: (long)estimate.TotalBytes + 1);
    }
}
