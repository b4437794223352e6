using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Cli.Commands;

/// <summary><c>mt gauge fix|diff</c>: the canonical (gauge-fixed) form of a model and the distance modulo the gauge.</summary>
static class GaugeFixCommands
{
    public const string GaugeFile = "gauge.json";
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    static string E(double v) => v.ToString("0.0E+00", CultureInfo.InvariantCulture);

    /// <summary>Max relative deviation of the log-probabilities of two parameter sets on seeded inputs (float64).</summary>
    public static double LogProbDeviation(ILanguageModel<double> like, GaugeArch a, ParamSet p0, ParamSet p1, int seed = 1)
    {
        var (ids, B, T) = Invariance.RandomInputs(a, seed);
        var (types, mask) = Invariance.RandomExtras(a, seed, B, T);
        var y0 = Invariance.LogProbs(like, a, p0, CpuBackend<double>.Instance, ids, B, T, types, mask);
        var y1 = Invariance.LogProbs(like, a, p1, CpuBackend<double>.Instance, ids, B, T, types, mask);
        return Invariance.Deviation(y0, y1).MaxRel;
    }

    public static Command Fix()
    {
        var model = new Option<string>("--model") { Description = "model directory", Required = true };
        var output = new Option<string>("--out") { Description = "output model directory (Hugging Face layout + gauge.json)", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "stored precision: f32 or f64 (computed in f64)", DefaultValueFactory = _ => "f64" };
        var cmd = new Command("fix", "Write the canonical (gauge-fixed) form: identity blocks in W_Q/W_V per head, biases and LayerNorm gains folded; gauge.json lists every fixed entry.");
        foreach (Option o in new Option[] { model, output, dtype }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            bool f64 = Common.IsF64(r.GetValue(dtype)!);
            var m = ModelFiles.Load(r.GetValue(model)!, CpuBackend<double>.Instance);
            var a = GaugeArch.For(m);
            var p0 = ParamSet.From(m.Parameters);
            var c = Canonical.Fix(a, p0);
            double dev = LogProbDeviation(m, a, p0, c.Params);
            c.Params.CopyTo(m.Parameters);
            string dir = r.GetValue(output)!;
            ModelFiles.Save(m, dir, f64 ? StDType.F64 : StDType.F32);
            var json = c.ToJson();
            json["logprob_max_rel_deviation_f64"] = dev;
            File.WriteAllText(Path.Combine(dir, GaugeFile), json.ToJsonString(Indented) + "\n");
            int analytic = FlatDirections.Analytic(a, p0.Count).Analytic;
            Console.WriteLine($"{m.Describe()}: {p0.Count:N0} parameters, {c.FixedCount:N0} fixed ({string.Join(" · ", c.Removed.Select(kv => $"{kv.Key} {kv.Value:N0}"))}), {c.FreeCount:N0} free");
            Console.WriteLine($"not removed: {string.Join("; ", c.NotRemoved.Select(kv => $"{kv.Key} ({kv.Value})"))}; analytic flat total {analytic:N0}");
            Console.WriteLine($"log-probabilities (float64, 4 random sequences): max relative deviation {E(dev)}{(dev < 1e-12 ? " (< 1e-12)" : " (ABOVE 1e-12)")}; wrote {dir} ({(f64 ? "F64" : "F32")}) and {GaugeFile}");
            return dev < 1e-12 ? 0 : 1;
        });
        return cmd;
    }

    public static Command Diff()
    {
        var model = new Option<string[]>("--model") { Description = "two model directories (give --model twice)", Required = true, AllowMultipleArgumentsPerToken = false };
        var json = new Option<bool>("--json") { Description = "print JSON" };
        var cmd = new Command("diff", "Distance between two checkpoints modulo the gauge (both canonicalised) next to the naive distance.");
        cmd.Options.Add(model); cmd.Options.Add(json);
        cmd.SetAction(r =>
        {
            var dirs = r.GetValue(model)!;
            if (dirs.Length != 2) throw new InputException($"--model: give exactly two model directories (got {dirs.Length})");
            var ma = ModelFiles.Load(dirs[0], CpuBackend<double>.Instance);
            var mb = ModelFiles.Load(dirs[1], CpuBackend<double>.Instance);
            if (ma.ConfigJson != mb.ConfigJson) throw new InputException($"--model: {dirs[0]} and {dirs[1]} have different configurations");
            var a = GaugeArch.For(ma);
            var pa = ParamSet.From(ma.Parameters); var pb = ParamSet.From(mb.Parameters);
            var (naive, naiveRel) = Distance(pa, pb);
            var ca = Canonical.Fix(a, pa); var cb = Canonical.Fix(a, pb);
            var (gauge, gaugeRel) = Distance(ca.Params, cb.Params);
            bool samePivots = ca.QPivots.SelectMany(x => x).SelectMany(x => x).SequenceEqual(cb.QPivots.SelectMany(x => x).SelectMany(x => x))
                && ca.VPivots.SelectMany(x => x).SelectMany(x => x).SequenceEqual(cb.VPivots.SelectMany(x => x).SelectMany(x => x));
            double fdev = LogProbDeviation(ma, a, pa, pb);
            if (r.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["naive"] = naive, ["naive_rel"] = naiveRel, ["modulo_gauge"] = gauge, ["modulo_gauge_rel"] = gaugeRel,
                    ["same_pivots"] = samePivots, ["logprob_max_rel_deviation"] = fdev,
                    ["removed"] = new JsonArray([.. ca.Removed.Keys.Select(k => (JsonNode)k)]),
                }.ToJsonString(Indented));
                return 0;
            }
            Console.WriteLine($"{ma.Describe()}");
            Console.WriteLine($"{"distance",-14} {"‖A−B‖",12} {"relative",12}");
            Console.WriteLine($"{"naive",-14} {E(naive),12} {E(naiveRel),12}");
            Console.WriteLine($"{"modulo gauge",-14} {E(gauge),12} {E(gaugeRel),12}   (removed: {string.Join(",", ca.Removed.Keys)}; not removed: {string.Join(",", ca.NotRemoved.Keys)}{(samePivots ? "" : "; pivot rows differ")})");
            Console.WriteLine($"log-probabilities: max relative deviation {E(fdev)} on 4 random sequences");
            return 0;
        });
        return cmd;
    }

    static (double Abs, double Rel) Distance(ParamSet a, ParamSet b)
    {
        double d = a.Minus(b).Norm();
        return (d, d / Math.Max(b.Norm(), double.Epsilon));
    }
}
