using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.GaugeFixed;

/// <summary>Golden files from Golden/make_gauge_fixed_golden.py: PyTorch ran a model and the canonical form `mt gauge fix` made of it.</summary>
public class GaugeFixedGoldenTests
{
    [Theory]
    [InlineData("gauge_fixed_tied.safetensors")]
    [InlineData("gauge_fixed_untied.safetensors")]
    public void TorchSeesTheSameFunctionAndTheFixedEntriesHoldTheirValues(string fileName)
    {
        var file = SafeTensors.Read(Path.Combine(AppContext.BaseDirectory, "Golden", fileName));
        var config = Gpt2Config.FromJson(file.Metadata["config"], file.Path);
        var lp0 = file["logprobs/orig"].ToDoubles();
        var lp1 = file["logprobs/fixed"].ToDoubles();
        double scale = lp0.Max(Math.Abs);
        // 1. In torch, the canonical form's log-probabilities equal the original's (float64, < 1e-12 relative).
        Assert.True(lp0.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-12 * scale);
        Assert.True(double.Parse(file.Metadata["logprobs_max_rel_deviation"], System.Globalization.CultureInfo.InvariantCulture) < 1e-12);
        var orig = new Gpt2<double>(config, CpuBackend<double>.Instance);
        var fixedModel = new Gpt2<double>(config, CpuBackend<double>.Instance);
        foreach (var p in orig.Parameters) ModelFiles.CopyInto(p, file["orig/" + p.Name], file.Path);
        foreach (var p in fixedModel.Parameters) ModelFiles.CopyInto(p, file["fixed/" + p.Name], file.Path);
        var p0 = ParamSet.From(orig.Parameters);
        var p1 = ParamSet.From(fixedModel.Parameters);
        // 2. Our engine agrees with torch on the canonical form.
        var ids = file["input_ids"].ToInt32s();
        int B = (int)file["input_ids"].Shape[0], T = (int)file["input_ids"].Shape[1];
        var a = GaugeArch.ForGpt2(config);
        var ours = Invariance.LogProbs(fixedModel, a, p1, CpuBackend<double>.Instance, ids, B, T);
        Assert.True(ours.Zip(lp1).Max(x => Math.Abs(x.First - x.Second)) < 1e-10 * scale);
        // 3. Counts: fixed = the analytic count of the removed kinds (the script's own formula), free = total − fixed.
        var g = JsonNode.Parse(file.Metadata["gauge_json"])!.AsObject();
        int fixedCount = g["fixed_count"]!.GetValue<int>();
        Assert.Equal(int.Parse(file.Metadata["analytic_removable"]), fixedCount);
        Assert.Equal(p0.Count - fixedCount, g["free_parameters"]!.GetValue<int>());
        var an = FlatDirections.Analytic(a, p0.Count);
        Assert.Equal(an.Analytic - an.ByKind["residual"], fixedCount);
        // 4. The current code makes exactly this canonical form and gauge.json from the original.
        var c = Canonical.Fix(a, p0);
        Assert.True(c.Params.Minus(p1).Norm() < 1e-12 * p1.Norm(), $"mt gauge fix now gives other weights ({c.Params.Minus(p1).Norm():E2})");
        Assert.Equal(g["fixed"]!.ToJsonString(), c.ToJson()["fixed"]!.ToJsonString());
    }
}
