using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.Gauge;

/// <summary>
/// Golden files from Golden/make_gauge_golden.py: PyTorch ran a model and the one `mt gauge apply` made of it.
/// </summary>
[Collection("cli")]
public class GaugeGoldenTests
{
    [Theory]
    [InlineData("gauge_tied.safetensors")]
    [InlineData("gauge_untied.safetensors")]
    public void TorchSeesTheSameFunctionWhileTheWeightsDiffer(string fileName)
    {
        var file = SafeTensors.Read(Path.Combine(AppContext.BaseDirectory, "Golden", fileName));
        var config = Gpt2Config.FromJson(file.Metadata["config"], file.Path);
        // 1. In torch, the transformed model's log-probabilities equal the original's.
        var lp0 = file["logprobs/orig"].ToDoubles();
        var lp1 = file["logprobs/gauged"].ToDoubles();
        double scale = lp0.Max(Math.Abs);
        Assert.True(lp0.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-12 * scale);
        // 2. ... while the weights differ.
        var orig = new Gpt2<double>(config, CpuBackend<double>.Instance);
        var gauged = new Gpt2<double>(config, CpuBackend<double>.Instance);
        foreach (var p in orig.Parameters) ModelFiles.CopyInto(p, file["orig/" + p.Name], file.Path);
        foreach (var p in gauged.Parameters) ModelFiles.CopyInto(p, file["gauged/" + p.Name], file.Path);
        var p0 = ParamSet.From(orig.Parameters);
        var p1 = ParamSet.From(gauged.Parameters);
        Assert.True(p1.Minus(p0).Norm() > 1e-2 * p0.Norm());
        // 3. Our engine agrees with torch on the transformed model.
        var ids = file["input_ids"].ToInt32s();
        int B = (int)file["input_ids"].Shape[0], T = (int)file["input_ids"].Shape[1];
        var a = GaugeArch.ForGpt2(config);
        var ours = Invariance.LogProbs(gauged, a, p1, CpuBackend<double>.Instance, ids, B, T);
        Assert.True(ours.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-10 * scale);
        // 4. The current code still makes exactly these weights from the original (same kinds, same seed).
        var again = p0.Clone();
        var rng = new Random(int.Parse(file.Metadata["seed"]));
        foreach (var k in GaugeKind.Parse(file.Metadata["kinds"])) k.Apply(a, again, rng);
        Assert.True(again.Minus(p1).Norm() < 1e-12 * p1.Norm(), $"mt gauge apply now gives other weights ({again.Minus(p1).Norm():E2})");
    }

    /// <summary>The tensors under <paramref name="prefix"/>, renamed to their Hugging Face names.</summary>
    static IEnumerable<StTensor> Under(SafeTensorFile file, string prefix) =>
        file.Tensors.Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal))
            .Select(t => new StTensor(t.Name[prefix.Length..], t.DType, t.Shape, t.Bytes));

    [Theory]
    [InlineData("gauge_bert_tied.safetensors")]     // odd sizes, 3 token types, pooler, padding
    [InlineData("gauge_bert_untied.safetensors")]
    public void TorchSeesTheSameBertFunctionWhileTheWeightsDiffer(string fileName)
    {
        var file = SafeTensors.Read(Path.Combine(AppContext.BaseDirectory, "Golden", fileName));
        var config = BertConfig.FromJson(file.Metadata["config"], file.Path);
        var lp0 = file["logprobs/orig"].ToDoubles();
        var lp1 = file["logprobs/gauged"].ToDoubles();
        double scale = lp0.Max(Math.Abs);
        Assert.True(lp0.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-12 * scale);
        var ops = CpuBackend<double>.Instance;
        var orig = ModelFiles.BuildBert(config, Under(file, "orig/"), file.Path, ops);
        var gauged = ModelFiles.BuildBert(config, Under(file, "gauged/"), file.Path, ops);
        var p0 = ParamSet.From(orig.Parameters);
        var p1 = ParamSet.From(gauged.Parameters);
        Assert.True(p1.Minus(p0).Norm() > 1e-2 * p0.Norm());
        var ids = file["input_ids"].ToInt32s();
        int B = (int)file["input_ids"].Shape[0], T = (int)file["input_ids"].Shape[1];
        var a = GaugeArch.For(gauged);
        var ours = Invariance.LogProbs(gauged, a, p1, ops, ids, B, T, file["token_type_ids"].ToInt32s(), file["attention_mask"].ToInt32s());
        Assert.True(ours.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-10 * scale);
        var again = p0.Clone();
        var rng = new Random(int.Parse(file.Metadata["seed"]));
        foreach (var k in GaugeKind.Parse(file.Metadata["kinds"])) k.Apply(a, again, rng);
        Assert.True(again.Minus(p1).Norm() < 1e-12 * p1.Norm(), $"mt gauge apply now gives other weights ({again.Minus(p1).Norm():E2})");
    }
}
