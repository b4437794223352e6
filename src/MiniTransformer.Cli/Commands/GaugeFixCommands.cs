using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;
using System.Numerics;
using System.Diagnostics;

namespace MiniTransformer.Cli.Commands;

/// <summary><c>mt gauge fix|diff</c>: the canonical (gauge-fixed) form of a model and the distance modulo the gauge.</summary>
public static class GaugeFixCommands
{
    public const string GaugeFile = "gauge.json";
    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    static string E(double v) => v.ToString("0.0E+00", CultureInfo.InvariantCulture);

    /// <summary>
    /// Max relative deviation of the outputs of two parameter sets on seeded inputs (float64): the log-probabilities, or
    /// for an encoder-only BERT the last hidden state and the pooler output (<c>Invariance.Outputs</c>).
    /// </summary>
    public static double LogProbDeviation(ILanguageModel<double> like, GaugeArch a, ParamSet p0, ParamSet p1, int seed = 1)
    {
        var (ids, B, T) = Invariance.RandomInputs(a, seed);
        var (types, mask) = Invariance.RandomExtras(a, seed, B, T);
        var y0 = Invariance.Outputs(like, a, p0, CpuBackend<double>.Instance, ids, B, T, types, mask);
        var y1 = Invariance.Outputs(like, a, p1, CpuBackend<double>.Instance, ids, B, T, types, mask);
        return Invariance.Deviation(y0, y1).MaxRel;
    }

    /// <summary>What <see cref="LogProbDeviation"/> compares, in words.</summary>
    static string Observed(GaugeArch a, ParamSet p) =>
        !a.EncoderOnly ? "log-probabilities" : p.Has("bert.pooler.dense.weight") ? "last hidden state + pooler output" : "last hidden state";

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
            RequireStandard(m, "gauge fix");
            var a = GaugeArch.For(m);
            var p0 = ParamSet.From(m.Parameters);
            var c = Canonical.Fix(a, p0);
            double dev = LogProbDeviation(m, a, p0, c.Params);
            c.Params.CopyTo(m.Parameters);
            string dir = r.GetValue(output)!;
            ModelFiles.Save(m, dir, f64 ? StDType.F64 : StDType.F32);
            var json = c.ToJson();
            json[a.EncoderOnly ? "output_max_rel_deviation_f64" : "logprob_max_rel_deviation_f64"] = dev;
            File.WriteAllText(Path.Combine(dir, GaugeFile), json.ToJsonString(Indented) + "\n");
            int analytic = FlatDirections.Analytic(a, p0.Count).Analytic;
            Console.WriteLine($"{m.Describe()}: {p0.Count:N0} parameters, {c.FixedCount:N0} fixed ({string.Join(" · ", c.Removed.Select(kv => $"{kv.Key} {kv.Value:N0}"))}), {c.FreeCount:N0} free");
            Console.WriteLine($"not removed: {string.Join("; ", c.NotRemoved.Select(kv => $"{kv.Key} ({kv.Value})"))}; analytic flat total {analytic:N0}");
            Console.WriteLine($"{Observed(a, p0)} (float64, 4 random sequences): max relative deviation {E(dev)}{(dev < 1e-12 ? " (< 1e-12)" : " (ABOVE 1e-12)")}; wrote {dir} ({(f64 ? "F64" : "F32")}) and {GaugeFile}");
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
            RequireStandard(ma, "gauge diff");
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
            Console.WriteLine($"{"modulo gauge",-14} {E(gauge),12} {E(gaugeRel),12}   (removed: {string.Join(",", ca.Removed.Keys)}, mlp units ordered; not removed: {(ca.NotRemoved.Keys.Any(k => k != "mlp") ? string.Join(",", ca.NotRemoved.Keys.Where(k => k != "mlp")) : "none")}{(samePivots ? "" : "; pivot rows differ")})");
            Console.WriteLine($"{Observed(a, pa)}: max relative deviation {E(fdev)} on 4 random sequences");
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// The canonical form is for the standard GELU GPT-2 / BERT: stochastic b_Q/b_V change which transformations are
    /// symmetries (they break them), and a PReLU MLP has per-unit scalings and slopes the canonical form does not handle.
    /// </summary>
    static void RequireStandard<F>(ILanguageModel<F> model, string what) where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (model is not (Gpt2<F> or Bert<F>)) throw new InputException($"{what}: architecture '{model.Arch}' is not supported (GPT-2 and BERT)");
        if (model is Gpt2<F> g && (g.Config.SymmetryBreaking is { Any: true } || g.Config.MlpActivation != MlpActivation.Gelu)
            || model is Bert<F> b && (b.Config.SymmetryBreaking is { Any: true } || b.Config.MlpActivation != MlpActivation.Gelu))
            throw new InputException($"{what}: not for a model with --symmetry-breaking or --mlp prelu (the canonical form is for the standard GELU model)");
    }

    // ---------------------------------------------------------------- mt train --gauge-fixed

    public static Option<bool> GaugeFixedOption() => new("--gauge-fixed")
    {
        Description = "GPT-2 or BERT: canonicalise the initial model (mt gauge fix), train only the free parameters (optimizer state for them only), skip the Q/V identity blocks in the kernels; gauge.json in the run folder",
    };

    /// <summary>
    /// Prepares gauge-fixed training: canonicalises the model (or, on resume, reads the run's gauge.json), installs the
    /// skip kernels, and restricts the optimizer to the free entries (chained after <paramref name="prev"/>).
    /// </summary>
    public static Action<Trainer<F>> SetupTraining<F>(ILanguageModel<F> model, string run, bool resume, TrainConfig config, Action<Trainer<F>>? prev, bool quiet = false)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        RequireStandard(model, "--gauge-fixed");
        if (model is Bert<F> { Config.MlmHead: false })
            throw new InputException("--gauge-fixed: an encoder-only BERT (no MLM head) has nothing to train on; mt gauge fix writes its canonical form");
        string path = Path.Combine(run, GaugeFile);
        SortedDictionary<string, SortedDictionary<int, double>> fixedEntries;
        int[][][] q, v;
        if (resume)
        {
            if (!File.Exists(path)) throw new InputException($"--resume --gauge-fixed: {path} is missing (the run was not gauge-fixed)");
            JsonObject o;
            try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InputException($"{path}: not a JSON object"); }
            catch (JsonException e) { throw new InputException($"{path}: {e.Message}"); }
            (fixedEntries, q, v) = CanonicalForm.ReadJson(o);
        }
        else
        {
            var a = GaugeArch.For(model);
            var c = Canonical.Fix(a, ParamSet.From(model.Parameters));
            c.Params.CopyTo(model.Parameters);
            Directory.CreateDirectory(run);
            File.WriteAllText(path, c.ToJson().ToJsonString(Indented) + "\n");
            (fixedEntries, q, v) = (c.Fixed, c.QPivots, c.VPivots);
            if (!quiet)
                Console.WriteLine($"  gauge-fixed: {c.FixedCount:N0} of {c.Params.Count:N0} parameters fixed ({string.Join(" · ", c.Removed.Select(kv => $"{kv.Key} {kv.Value:N0}"))}); {c.FreeCount:N0} trainable; {path}");
        }
        if (!quiet && config.Opt.WeightDecay != 0)
            Console.WriteLine($"  gauge-fixed: weight decay {config.Opt.WeightDecay} is not gauge invariant (compare with --weight-decay 0)");
        if (model is Gpt2<F> g) GaugeFixedTraining.InstallKernels(g, q, v);
        else GaugeFixedTraining.InstallKernels((Bert<F>)model, q, v);
        var free = GaugeFixedTraining.FreeIndices(model.Parameters, fixedEntries);
        return t => { prev?.Invoke(t); t.Optimizer.RestrictTo(free); };
    }

    /// <summary>
    /// mt gauge bench-train: the same GPT-2, data, seed and steps trained full and gauge-fixed (weight decay 0),
    /// alternating rounds; median step times against the multiply-add ratio predicted from the shapes.
    /// </summary>
    public static Command BenchTrain()
    {
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 2 };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => 2 };
        var dim = new Option<int>("--dim") { DefaultValueFactory = _ => 256 };
        var ffn = new Option<int>("--ffn") { DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 16 };
        var seq = new Option<int>("--seq") { DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 30 };
        var rounds = new Option<int>("--rounds") { DefaultValueFactory = _ => 3 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var data = new Option<string>("--data") { DefaultValueFactory = _ => "synthetic:induction" };
        var dtype = Common.Dtype();
        var threads = Common.Threads();
        var output = new Option<string>("--out") { DefaultValueFactory = _ => "runs/gauge-bench" };
        var cmd = new Command("bench-train", "Full vs gauge-fixed training on the same GPT-2, data and seed (weight decay 0): predicted multiply-add ratio vs measured median step-time ratio.");
        foreach (Option o in new Option[] { layers, heads, dim, ffn, batch, seq, steps, rounds, seed, data, dtype, threads, output }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            if (Common.IsF64(r.GetValue(dtype)!)) BenchRun<double>(r, layers, heads, dim, ffn, batch, seq, steps, rounds, seed, data, output);
            else BenchRun<float>(r, layers, heads, dim, ffn, batch, seq, steps, rounds, seed, data, output);
            return 0;
        });
        return cmd;
    }

    static void BenchRun<F>(ParseResult r, Option<int> layers, Option<int> heads, Option<int> dim, Option<int> ffn, Option<int> batch, Option<int> seq,
        Option<int> steps, Option<int> rounds, Option<int> seed, Option<string> dataOpt, Option<string> output) where F : unmanaged, IFloatingPointIeee754<F>
    {
        int sd = r.GetValue(seed), B = r.GetValue(batch), T = r.GetValue(seq), S = r.GetValue(steps);
        var data = MiniTransformer.Data.DataSources.Create(r.GetValue(dataOpt)!, sd);
        var cfg = new Gpt2Config(data.VocabSize, T, r.GetValue(dim), r.GetValue(layers), r.GetValue(heads), 1e-5, r.GetValue(ffn), true);
        var ops = Common.Backend<F>("cpu");
        var (macFull, macFixed) = GaugeFixedTraining.StepMacs(cfg, B, T);
        string dir = r.GetValue(output)!;
        var results = new Dictionary<string, List<double>> { ["full"] = [], ["fixed"] = [] };
        var info = new Dictionary<string, (long Trainable, long State, double Loss)>();
        var pooled = new Dictionary<string, List<double>> { ["full"] = [], ["fixed"] = [] };
        for (int round = 0; round < r.GetValue(rounds); round++)
            foreach (var mode in new[] { "full", "fixed" })
            {
                var model = new Gpt2<F>(cfg, ops);
                model.InitializeRandom(sd);
                var config = new TrainConfig(S, B, T, 1e-3, WarmupSteps: 0, EvalEvery: S, EvalBatches: 1, Seed: sd,
                    Optimizer: new OptimizerConfig(OptimizerKind.AdamW, WeightDecay: 0));
                string run = Path.Combine(dir, $"{mode}-{round}");
                if (Directory.Exists(run)) Directory.Delete(run, true);
                var trainer = new Trainer<F>(model, data, config, ops, run);
                long trainable = model.Parameters.Sum(p => (long)p.Value.Length);
                if (mode == "fixed")
                {
                    SetupTraining(model, run, false, config, null, quiet: true)(trainer);
                    trainable -= JsonNode.Parse(File.ReadAllText(Path.Combine(run, GaugeFile)))!["fixed_count"]!.GetValue<long>();
                }
                trainer.Run();
                // Median over the steps after the first few (warm-up of the JIT and the buffers).
                var ms = trainer.History.Skip(Math.Min(3, S - 1)).Select(h => h.Milliseconds).OrderBy(x => x).ToList();
                results[mode].Add(ms[ms.Count / 2]);
                pooled[mode].AddRange(ms);
                info[mode] = (trainable, trainer.Optimizer.StateScalars, trainer.History[^1].Loss);
            }
        double mf = Median(results["full"]), mx = Median(results["fixed"]);
        Console.WriteLine($"{new Gpt2<F>(cfg, ops).Describe()} · B={B} T={T} · {S} steps × {r.GetValue(rounds)} rounds (alternating) · AdamW, weight decay 0 · {typeof(F).Name} · {Parallelism.Threads} threads · seed {sd}");
        Console.WriteLine($"{"mode",-6} {"trainable",11} {"opt. state",11} {"MACs/step",11} {"median ms/step",15} {"per round",24} {"final loss",10}");
        foreach (var mode in new[] { "full", "fixed" })
        {
            var (tr, st, loss) = info[mode];
            Console.WriteLine($"{mode,-6} {tr,11:N0} {st,11:N0} {E(mode == "full" ? macFull : macFixed),11} {Median(results[mode]),15:F2} {string.Join(" ", results[mode].Select(x => x.ToString("F1", CultureInfo.InvariantCulture))),24} {loss,10:F4}");
        }
        double pred = macFixed / macFull, meas = Median(pooled["fixed"]) / Median(pooled["full"]);
        double paired = Median([.. results["fixed"].Zip(results["full"], (x, y) => x / y)]);
        Console.WriteLine($"predicted ratio (MACs fixed/full) {pred:F3} (saving {100 * (1 - pred):F1} %) · measured step-time ratio {meas:F3} (median over all {pooled["full"].Count} + {pooled["fixed"].Count} timed steps; saving {100 * (1 - meas):F1} %) · median of per-round ratios {paired:F3} · measured/predicted {meas / pred:F3}");
        File.WriteAllText(Path.Combine(dir, "bench.json"), new JsonObject
        {
            ["config"] = JsonNode.Parse(cfg.ToJson()), ["batch"] = B, ["seq"] = T, ["steps"] = S, ["seed"] = sd, ["threads"] = Parallelism.Threads,
            ["macs_full"] = macFull, ["macs_fixed"] = macFixed, ["predicted_ratio"] = pred, ["measured_ratio"] = meas, ["paired_round_ratio"] = paired,
            ["median_ms_full"] = Median(pooled["full"]), ["median_ms_fixed"] = Median(pooled["fixed"]),
            ["ms_full"] = new JsonArray([.. results["full"].Select(x => (JsonNode)x)]), ["ms_fixed"] = new JsonArray([.. results["fixed"].Select(x => (JsonNode)x)]),
            ["trainable_full"] = info["full"].Trainable, ["trainable_fixed"] = info["fixed"].Trainable,
            ["optimizer_state_full"] = info["full"].State, ["optimizer_state_fixed"] = info["fixed"].State,
        }.ToJsonString(Indented) + "\n");
    }

    static double Median(List<double> xs) { var s = xs.OrderBy(x => x).ToList(); return s.Count % 2 == 1 ? s[s.Count / 2] : 0.5 * (s[s.Count / 2 - 1] + s[s.Count / 2]); }

    static (double Abs, double Rel) Distance(ParamSet a, ParamSet b)
    {
        double d = a.Minus(b).Norm();
        return (d, d / Math.Max(b.Norm(), double.Epsilon));
    }
}
