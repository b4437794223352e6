using System.Numerics;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Models;

/// <summary>
/// Whole-model checks against golden files written by PyTorch (tests/MiniTransformer.Tests/Golden/make_golden.py,
/// built from nn.MultiheadAttention, F.layer_norm, F.gelu, F.cross_entropy and torch.optim.AdamW).
/// </summary>
public class Gpt2GoldenTests
{
    static string GoldenPath(string file) => Path.Combine(AppContext.BaseDirectory, "Golden", file);

    internal static Gpt2<F> LoadGolden<F>(SafeTensorFile file, string prefix = "") where F : unmanaged, IFloatingPointIeee754<F>
    {
        var config = Gpt2Config.FromJson(file.Metadata["config"], file.Path);
        var model = new Gpt2<F>(config, CpuBackend<F>.Instance);
        foreach (var p in model.Parameters) ModelFiles.CopyInto(p, file[prefix + p.Name], file.Path);
        return model;
    }

    static void CheckForwardBackward<F>(string fileName, double tol) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var file = SafeTensors.Read(GoldenPath(fileName));
        var model = LoadGolden<F>(file);
        var ids = file["input_ids"].ToInt32s();
        var targets = file["targets"].ToInt32s();
        int B = (int)file["input_ids"].Shape[0], T = (int)file["input_ids"].Shape[1];

        var (sum, count) = model.Forward(ids, targets, B, T);
        foreach (var p in model.Parameters) p.Grad.Clear();
        model.Backward(1.0 / count);

        Numerics.AssertClose([
            ("logits", Numerics.ToDoubles<F>(model.Logits.Span), file["logits"].ToDoubles()),
            ("hidden_states", Numerics.ToDoubles<F>(model.Hidden.Span), file["hidden_states"].ToDoubles()),
        ], tol);
        double refLoss = file["loss"].ToDoubles()[0];
        Assert.True(Math.Abs(sum / count - refLoss) / refLoss < tol, $"loss {sum / count} vs torch {refLoss}");
        Numerics.AssertClose([.. model.Parameters.Select(p =>
            (p.Name, Numerics.ToDoubles<F>(p.Grad.Span), file["grad/" + p.Name].ToDoubles()))], tol);
    }

    [Theory]
    [InlineData("gpt2_tied.safetensors")]
    [InlineData("gpt2_untied.safetensors")]
    public void Float64MatchesPyTorch(string file) => CheckForwardBackward<double>(file, 1e-10);

    [Theory]
    [InlineData("gpt2_tied.safetensors")]
    [InlineData("gpt2_untied.safetensors")]
    public void Float32MatchesPyTorch(string file) => CheckForwardBackward<float>(file, 1e-4);

    [Fact]
    public void TenAdamWStepsMatchTorchOptim()
    {
        var file = SafeTensors.Read(GoldenPath("gpt2_adamw.safetensors"));
        var model = LoadGolden<double>(file);
        var hp = System.Text.Json.JsonDocument.Parse(file.Metadata["adamw"]).RootElement;
        var betas = hp.GetProperty("betas");
        var opt = new Optimizer<double>(model.Parameters, new OptimizerConfig(OptimizerKind.AdamW,
            betas[0].GetDouble(), betas[1].GetDouble(), hp.GetProperty("eps").GetDouble(),
            hp.GetProperty("weight_decay").GetDouble(), GradClip: 0), CpuBackend<double>.Instance);
        double lr = hp.GetProperty("lr").GetDouble();
        var ids = file["input_ids"].ToInt32s();
        var targets = file["targets"].ToInt32s();
        int B = (int)file["input_ids"].Shape[0], T = (int)file["input_ids"].Shape[1];
        var expected = file["losses"].ToDoubles();
        for (int step = 0; step < expected.Length; step++)
        {
            opt.ZeroGrad();
            var (sum, count) = model.Forward(ids, targets, B, T);
            Assert.True(Math.Abs(sum / count - expected[step]) < 1e-6, $"step {step}: loss {sum / count} vs torch {expected[step]}");
            model.Backward(1.0 / count);
            opt.Update(lr);
        }
        Numerics.AssertClose([.. model.Parameters.Select(p =>
            (p.Name, p.Value.Data, file["final/" + p.Name].ToDoubles()))], 1e-8);
    }
}
