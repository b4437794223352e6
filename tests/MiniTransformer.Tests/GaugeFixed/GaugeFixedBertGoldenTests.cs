using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.GaugeFixed;

/// <summary>
/// Golden files from Golden/make_gauge_fixed_golden_bert.py: PyTorch (its own post-LN BERT from the Hugging Face layout)
/// ran a BERT and the canonical form `mt gauge fix` made of it.
/// </summary>
public class GaugeFixedBertGoldenTests
{
    static IEnumerable<StTensor> Under(SafeTensorFile f, string prefix) =>
        f.Tensors.Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal))
            .Select(t => new StTensor(t.Name[prefix.Length..], t.DType, t.Shape, t.Bytes));

    [Theory]
    [InlineData("gauge_fixed_bert_tied.safetensors")]     // odd sizes (d=6, 3 heads, 2 layers, 3 token types), pooler, padding
    [InlineData("gauge_fixed_bert_untied.safetensors")]
    public void TorchSeesTheSameFunctionAndTheFixedEntriesHoldTheirValues(string fileName)
    {
        var file = SafeTensors.Read(Path.Combine(AppContext.BaseDirectory, "Golden", fileName));
        var config = BertConfig.FromJson(file.Metadata["config"], file.Path);
        var lp0 = file["logprobs/orig"].ToDoubles();
        var lp1 = file["logprobs/fixed"].ToDoubles();
        double scale = lp0.Max(Math.Abs);
        // 1. In torch, the canonical form's log-probabilities equal the original's (float64, < 1e-12 relative).
        Assert.True(lp0.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-12 * scale);
        Assert.True(double.Parse(file.Metadata["logprobs_max_rel_deviation"], System.Globalization.CultureInfo.InvariantCulture) < 1e-12);
        var ops = CpuBackend<double>.Instance;
        var orig = ModelFiles.BuildBert(config, Under(file, "orig/"), file.Path, ops);
        var fixedModel = ModelFiles.BuildBert(config, Under(file, "fixed/"), file.Path, ops);
        var p0 = ParamSet.From(orig.Parameters);
        var p1 = ParamSet.From(fixedModel.Parameters);
        // 2. Our engine agrees with torch on the canonical form.
        var ids = file["input_ids"].ToInt32s();
        int B = (int)file["input_ids"].Shape[0], T = (int)file["input_ids"].Shape[1];
        var a = GaugeArch.For(fixedModel);
        var ours = Invariance.LogProbs(fixedModel, a, p1, ops, ids, B, T, file["token_type_ids"].ToInt32s(), file["attention_mask"].ToInt32s());
        Assert.True(ours.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-10 * scale);
        // 3. Counts: fixed = the analytic count (the script's own formula), free = total − fixed; every listed entry (names
        //    and indices as stored: query/key/value) holds its value in the stored tensors.
        var g = JsonNode.Parse(file.Metadata["gauge_json"])!.AsObject();
        int fixedCount = g["fixed_count"]!.GetValue<int>();
        Assert.Equal(int.Parse(file.Metadata["analytic_removable"]), fixedCount);
        Assert.Equal(p0.Count - fixedCount, g["free_parameters"]!.GetValue<int>());
        Assert.Equal(FlatDirections.Analytic(a, p0.Count).Analytic, fixedCount);
        foreach (var e in g["fixed"]!.AsArray())
        {
            var stored = file["fixed/" + (string)e!["tensor"]!].ToDoubles();
            var idx = e["indices"]!.AsArray().Select(x => (int)x!).ToArray();
            var val = e["values"]!.AsArray().Select(x => (double)x!).ToArray();
            for (int i = 0; i < idx.Length; i++) Assert.Equal(val[i], stored[idx[i]]);
        }
        // 4. The current code makes exactly this canonical form and gauge.json from the original.
        var c = Canonical.Fix(a, p0);
        Assert.True(c.Params.Minus(p1).Norm() < 1e-12 * p1.Norm(), $"mt gauge fix now gives other weights ({c.Params.Minus(p1).Norm():E2})");
        Assert.Equal(g["fixed"]!.ToJsonString(), c.ToJson()["fixed"]!.ToJsonString());
    }
}
