using System.Text.Json;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tensors;
using MiniTransformer.Training;
using Xunit;

namespace MiniTransformer.Tests.SymmetryBreaking;

/// <summary>mt experiment symmetry on a tiny grid (in-process): the gauge-fixed row, its counts and state bytes, resume.</summary>
[Collection("cli")]
public sealed class ExperimentGridTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-expgrid-").FullName;
    public void Dispose() => Directory.Delete(dir, true);

    static string[] Grid(string outDir, int steps, string variants, string optimizers) =>
    [
        "experiment", "symmetry", "--data", "synthetic:induction", "--steps", steps.ToString(), "--seeds", "1", "--layers", "1",
        "--heads", "2", "--dim", "16", "--batch", "2", "--seq", "16", "--eval-every", "2", "--threads", "1",
        "--variants", variants, "--optimizers", optimizers, "--out", outDir,
    ];

    static JsonElement Result(string root, string run) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(root, "runs", run, "result.json"))).RootElement;

    [Fact]
    public void Grid_has_a_gauge_fixed_row_with_free_only_state_and_resumes()
    {
        string a = Path.Combine(dir, "a");
        var (code, o, err) = InProcessCli.Run(Grid(a, 4, "full,fixed,bq,bq+bv", "adamw,ecd"));
        Assert.True(code == 0, err + o);
        string report = File.ReadAllText(Path.Combine(a, "report.md"));
        Assert.Contains("| fixed | adamw |", report);
        Assert.Contains("| fixed | ecd |", report);
        Assert.Contains("weight decay: 0", report);
        Assert.True(File.Exists(Path.Combine(a, "loss.png")));

        var full = Result(a, "full-adamw-s1");
        long total = full.GetProperty("parameters").GetInt64();
        Assert.Equal(0, full.GetProperty("fixed").GetInt64());
        Assert.Equal(2 * total * sizeof(float), full.GetProperty("optimizer_state_bytes").GetInt64());
        foreach (var (opt, scalarsPerFree) in new[] { ("adamw", 2), ("ecd", 1) })
        {
            string run = $"fixed-{opt}-s1";
            var res = Result(a, run);
            var gauge = JsonDocument.Parse(File.ReadAllText(Path.Combine(a, "runs", run, "gauge.json"))).RootElement;
            long fixedCount = gauge.GetProperty("fixed_count").GetInt64();
            Assert.True(fixedCount > 0);
            Assert.Equal(fixedCount, res.GetProperty("fixed").GetInt64());
            Assert.Equal(total, res.GetProperty("parameters").GetInt64());
            Assert.Equal(total - fixedCount, res.GetProperty("trainable").GetInt64());
            // Optimizer state only for the free entries: AdamW two moments, ECD one momentum per free entry.
            Assert.Equal(scalarsPerFree * (total - fixedCount) * sizeof(float), res.GetProperty("optimizer_state_bytes").GetInt64());
            Assert.Contains($"| fixed | {opt} | {(total - fixedCount).ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} |", report);
            // The fixed entries still hold their canonical values after training.
            var m = ModelFiles.Load(Path.Combine(a, "runs", run, "checkpoint"), CpuBackend<double>.Instance);
            var byName = m.Parameters.ToDictionary(p => p.Name);
            var (fixedEntries, _, _) = MiniTransformer.Gauge.CanonicalForm.ReadJson(System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(a, "runs", run, "gauge.json")))!.AsObject());
            foreach (var (t, e) in fixedEntries) foreach (var (i, v) in e) Assert.Equal((float)v, (float)byName[t].Value.Data[i]);
        }

        // Interrupted grid: the gauge-fixed ECD run stopped at step 2 (its checkpoint there, no result.json) resumes to step 4
        // and ends bit-identical to the uninterrupted run (ECD's rate is constant, so the shorter first leg replays exactly).
        string b = Path.Combine(dir, "b");
        (code, o, err) = InProcessCli.Run(Grid(b, 2, "fixed", "ecd"));
        Assert.True(code == 0, err + o);
        File.Delete(Path.Combine(b, "runs", "fixed-ecd-s1", "result.json"));
        (code, o, err) = InProcessCli.Run(Grid(b, 4, "fixed", "ecd"));
        Assert.True(code == 0, err + o);
        Assert.Contains("resuming at step 2", o);
        var ma = ModelFiles.Load(Path.Combine(a, "runs", "fixed-ecd-s1", "checkpoint"), CpuBackend<float>.Instance);
        var mb = ModelFiles.Load(Path.Combine(b, "runs", "fixed-ecd-s1", "checkpoint"), CpuBackend<float>.Instance);
        foreach (var (p, q) in ma.Parameters.Zip(mb.Parameters)) Assert.Equal(p.Value.Data, q.Value.Data);
        // A finished run is skipped on the next call.
        (code, o, err) = InProcessCli.Run(Grid(b, 4, "fixed", "ecd"));
        Assert.True(code == 0, err + o);
        Assert.Contains("done earlier, skipped", o);
    }

    [Fact]
    public void Prelu_with_the_fixed_variant_is_refused_in_one_line()
    {
        var (code, _, err) = InProcessCli.Run([.. Grid(Path.Combine(dir, "c"), 2, "fixed", "adamw"), "--mlp", "prelu"]);
        Assert.Equal(2, code);
        Assert.Contains("--variants fixed", err);
    }
}

/// <summary>ECD restricted to free entries is ECD on the free coordinates alone (D = their count).</summary>
public class EcdRestrictedTests
{
    // F(θ) = ½ Σ c_i (θ_i − t_i)² + 3 over all coordinates; the fixed ones never move.
    static readonly double[] C = [1.0, 2.0, 0.5, 3.0, 1.5], Tg = [0.3, -0.2, 1.0, 0.0, -1.0];

    static double LossAndGrads(IReadOnlyList<(Parameter<double> P, int[] Coords)> ps)
    {
        double f = 3;
        foreach (var (p, coords) in ps)
            for (int k = 0; k < coords.Length; k++)
            {
                double d = p.Value.Data[k] - Tg[coords[k]];
                f += 0.5 * C[coords[k]] * d * d;
                p.Grad.Data[k] = C[coords[k]] * d;
            }
        return f;
    }

    [Fact]
    public void Restricted_ecd_equals_ecd_on_the_free_coordinates()
    {
        double[] th0 = [1.0, 0.5, -0.5, 0.8, 0.2];
        var cfg = new OptimizerConfig(OptimizerKind.Ecd, EcdEta: 4, EcdF0: 2.0, WeightDecay: 0);
        // Restricted: tensors [0, 1] and [2, 3, 4] with coordinate 3 fixed.
        var a = new Parameter<double>("a", new Tensor<double>(2)); var b = new Parameter<double>("b", new Tensor<double>(3));
        th0.AsSpan(0, 2).CopyTo(a.Value.Data); th0.AsSpan(2, 3).CopyTo(b.Value.Data);
        var opt = new Optimizer<double>([a, b], cfg, CpuBackend<double>.Instance);
        opt.RestrictTo([null, [0, 2]]);
        // Reference: the free coordinates only, as two tensors [0, 1] and [2, 4] (coordinate 3 constant at 0.8).
        var a2 = new Parameter<double>("a", new Tensor<double>(2)); var b2 = new Parameter<double>("b", new Tensor<double>(2));
        th0.AsSpan(0, 2).CopyTo(a2.Value.Data); b2.Value.Data[0] = th0[2]; b2.Value.Data[1] = th0[4];
        var refOpt = new Optimizer<double>([a2, b2], cfg, CpuBackend<double>.Instance);
        Assert.Equal(4, opt.Ecd!.Dim);
        Assert.Equal(4, opt.StateScalars);
        for (int s = 0; s < 12; s++)
        {
            double f = LossAndGrads([(a, [0, 1]), (b, [2, 3, 4])]);
            LossAndGrads([(a2, [0, 1]), (b2, [2, 4])]);   // the same θ on the free coordinates, so the same F
            opt.Update(0.3, f);
            refOpt.Update(0.3, f);
            Assert.Equal(a2.Value.Data, a.Value.Data);
            Assert.Equal(b2.Value.Data[0], b.Value.Data[0]);
            Assert.Equal(0.8, b.Value.Data[1]);
            Assert.Equal(b2.Value.Data[1], b.Value.Data[2]);
        }
        Assert.NotEqual(th0[0], a.Value.Data[0]);
    }
}
