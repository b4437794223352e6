using System.Numerics;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Tests.Models;

/// <summary>
/// Whole-BERT checks against golden files written by PyTorch (Golden/make_golden_bert.py: nn.TransformerEncoderLayer
/// post-LN with erf gelu and a key padding mask, nn.Embedding, nn.LayerNorm, tied MLM decoder, F.cross_entropy):
/// V=37, d=15 in 3 heads, 2 layers, intermediate 27, two token types, B=3 rows padded to 6, 4 and 1 tokens.
/// </summary>
public class BertGoldenTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static string GoldenPath(string file) => Path.Combine(AppContext.BaseDirectory, "Golden", file);

    /// <summary>The golden file's parameters (names starting bert. or cls.) through the Hugging Face loader.</summary>
    internal static Bert<F> LoadGolden<F>(SafeTensorFile file, Func<string, string>? rename = null) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var config = BertConfig.FromJson(file.Metadata["config"], file.Path);
        var tensors = file.Tensors.Where(t => t.Name.StartsWith("bert.", StringComparison.Ordinal) || t.Name.StartsWith("cls.", StringComparison.Ordinal));
        if (rename is not null) tensors = tensors.Select(t => new StTensor(rename(t.Name), t.DType, t.Shape, t.Bytes));
        return ModelFiles.BuildBert(config, tensors, file.Path, CpuBackend<F>.Instance);
    }

    internal static (int[] Ids, int[] Types, int[] Mask, int[] Targets, int B, int T) Batch(SafeTensorFile file)
    {
        var ids = file["input_ids"];
        return (ids.ToInt32s(), file["token_type_ids"].ToInt32s(), file["attention_mask"].ToInt32s(), file["targets"].ToInt32s(),
            (int)ids.Shape[0], (int)ids.Shape[1]);
    }

    internal static (double Loss, Bert<F> Model) ForwardBackward<F>(SafeTensorFile file, Func<string, string>? rename = null)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var model = LoadGolden<F>(file, rename);
        var (ids, types, mask, targets, B, T) = Batch(file);
        var (sum, count) = model.Forward(ids, targets, B, T, types, mask);
        double loss = sum / count;
        Tensor<F>? probe = null;
        if (file.TryGet("pooler_probe", out var pt))
        {
            probe = new Tensor<F>(B, model.Config.HiddenSize);
            ModelFiles.CopyInto(new Parameter<F>("pooler_probe", probe), pt, file.Path);
            var pooled = model.Pooled.Span;
            var pr = probe.Span;
            for (int i = 0; i < pr.Length; i++) loss += double.CreateTruncating(pooled[i] * pr[i]);
        }
        foreach (var p in model.Parameters) p.Grad.Clear();
        model.Backward(1.0 / count, probe);
        return (loss, model);
    }

    void Check<F>(string fileName, double tol, Func<string, string>? rename = null) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var file = SafeTensors.Read(GoldenPath(fileName));
        var (loss, model) = ForwardBackward<F>(file, rename);
        var outputs = new List<(string, double[], double[])>
        {
            ("logits", Numerics.ToDoubles<F>(model.Logits.Span), file["logits"].ToDoubles()),
            ("hidden_states", Numerics.ToDoubles<F>(model.Hidden.Span), file["hidden_states"].ToDoubles()),
        };
        if (file.TryGet("pooled_output", out var po)) outputs.Add(("pooled_output", Numerics.ToDoubles<F>(model.Pooled.Span), po.ToDoubles()));
        Report("outputs", outputs);
        Numerics.AssertClose(outputs, tol);
        double refLoss = file["loss"].ToDoubles()[0];
        Assert.True(Math.Abs(loss - refLoss) / Math.Abs(refLoss) < tol, $"loss {loss} vs torch {refLoss}");
        var grads = ModelFiles.HfTensors(model, p => p.Grad).ToList();
        Assert.Equal(file.Tensors.Count(t => t.Name.StartsWith("grad/", StringComparison.Ordinal)), grads.Count);
        List<(string, double[], double[])> gradGroup = [.. grads.Select(g => (g.Name, Numerics.ToDoubles<F>(g.Data), file["grad/" + g.Name].ToDoubles()))];
        Report("gradients", gradGroup);
        Numerics.AssertClose(gradGroup, tol);
    }

    void Report(string what, IReadOnlyList<(string Name, double[] Ours, double[] Ref)> group)
    {
        double S = group.Max(g => Numerics.Norm<double>(g.Ref));
        var worst = group.Select(g => (g.Name, Err: Numerics.RelError<double, double>(g.Ours, g.Ref, S))).MaxBy(x => x.Err);
        output.WriteLine($"{what}: worst relative error {worst.Err:E2} ({worst.Name})");
    }

    [Theory]
    [InlineData("bert_mlm.safetensors")]
    [InlineData("bert_pooler.safetensors")]
    public void Float64MatchesPyTorch(string file) => Check<double>(file, 1e-10);

    [Theory]
    [InlineData("bert_mlm.safetensors")]
    [InlineData("bert_pooler.safetensors")]
    public void Float32MatchesPyTorch(string file) => Check<float>(file, 1e-4);

    /// <summary>The old TensorFlow-era spelling (LayerNorm.gamma/beta) and checkpoints without the bert. prefix load the same.</summary>
    [Fact]
    public void OldNamesAndMissingPrefixLoadTheSame() =>
        Check<double>("bert_pooler.safetensors", 1e-10, name =>
        {
            if (name.StartsWith("bert.", StringComparison.Ordinal)) name = name["bert.".Length..];
            if (name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)) name = name[..^"weight".Length] + "gamma";
            if (name.EndsWith("LayerNorm.bias", StringComparison.Ordinal)) name = name[..^"bias".Length] + "beta";
            return name;
        });

    /// <summary>Padded query positions still get outputs, but no real position attends to a padded key.</summary>
    [Fact]
    public void PaddedKeysGetNoAttentionAndDoNotChangeRealPositions()
    {
        var file = SafeTensors.Read(GoldenPath("bert_mlm.safetensors"));
        var model = LoadGolden<double>(file);
        var (ids, types, mask, _, B, T) = Batch(file);
        model.Forward(ids, null, B, T, types, mask);
        var before = model.Logits.Data.ToArray();
        var pattern = model.Layers[0].Attn.Pattern.Data;
        int H = model.Config.NumAttentionHeads;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int q = 0; q < T; q++)
                    for (int k = 0; k < T; k++)
                        if (mask[b * T + k] == 0) Assert.Equal(0.0, pattern[((b * H + h) * T + q) * T + k]);
        // change the ids under the padding: real positions are unchanged
        var ids2 = ids.ToArray();
        for (int n = 0; n < ids2.Length; n++) if (mask[n] == 0) ids2[n] = (ids2[n] + 5) % model.VocabSize;
        model.Forward(ids2, null, B, T, types, mask);
        int V = model.VocabSize;
        for (int n = 0; n < B * T; n++)
            if (mask[n] == 1)
                for (int v = 0; v < V; v++) Assert.Equal(before[n * V + v], model.Logits.Data[n * V + v], 1e-12);
    }
}
