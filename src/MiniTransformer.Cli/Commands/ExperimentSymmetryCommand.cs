using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;
using static MiniTransformer.Cli.Commands.Common;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt experiment symmetry</c>: the grid of arXiv 2601.22257 on one data source — full (symmetric) model, gauge-fixed
/// (<c>mt train --gauge-fixed</c>: the redundancy removed), b_Q, b_Q+b_V (the symmetry broken), each with AdamW and ECD,
/// over seeds — with report.md (trainable parameters, optimizer-state bytes, median step time, tokens/s, final val loss
/// mean ± std, steps to a target loss) and loss.png. Each run lives in its own folder with checkpoints; a finished run
/// leaves result.json, so an interrupted grid resumes where it stopped (an unfinished run resumes from its checkpoint).
/// </summary>
static class ExperimentSymmetryCommand
{
    /// <summary>The <c>experiment</c> parent command with <c>symmetry</c> under it.</summary>
    public static Command Create()
    {
        var cmd = new Command("experiment", "Reproducible experiment grids that write a report.");
        cmd.Subcommands.Add(Symmetry());
        cmd.Subcommands.Add(ExperimentRotationCommand.Create());
        cmd.Subcommands.Add(ExperimentCovarianceCommand.Create());
        return cmd;
    }

    sealed record Variant(string Name, bool Bq, bool Bv, bool Fixed = false);
    static readonly Variant[] AllVariants =
        [new("full", false, false), new("fixed", false, false, Fixed: true), new("bq", true, false), new("bq+bv", true, true)];

    public static Command Symmetry()
    {
        var data = new Option<string>("--data") { Description = "data spec (as mt train)", Required = true };
        var steps = new Option<int>("--steps") { Description = "optimizer steps per run", DefaultValueFactory = _ => 300 };
        var seeds = new Option<int>("--seeds") { Description = "seeds per configuration (1..N)", DefaultValueFactory = _ => 3 };
        var outDir = new Option<string>("--out") { Description = "experiment folder (resumed if it exists)", Required = true };
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 2 };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => 4 };
        var dim = new Option<int>("--dim") { DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 8 };
        var seq = new Option<int>("--seq") { DefaultValueFactory = _ => 64 };
        var mlp = new Option<string>("--mlp") { Description = "gelu | prelu for every run", DefaultValueFactory = _ => "gelu" };
        var adamLr = new Option<double>("--adamw-lr") { DefaultValueFactory = _ => 1e-3 };
        var ecdLr = new Option<double>("--ecd-lr") { DefaultValueFactory = _ => 1.0 };
        var ecdEta = new Option<double>("--ecd-eta") { DefaultValueFactory = _ => 100 };
        var ecdF0 = new Option<double>("--ecd-f0") { Description = "ECD F₀ (below the reachable loss; cross-entropy ≥ 0, so 0 is always safe)", DefaultValueFactory = _ => 0.0 };
        var optimizers = new Option<string>("--optimizers") { Description = "comma list of adamw, ecd, sgdm", DefaultValueFactory = _ => "adamw,ecd" };
        var evalEvery = new Option<int>("--eval-every") { DefaultValueFactory = _ => 25 };
        var variants = new Option<string>("--variants") { Description = "comma list of full, fixed (gauge-fixed), bq, bq+bv", DefaultValueFactory = _ => "full,fixed,bq,bq+bv" };
        var wdOpt = new Option<double>("--weight-decay") { Description = "AdamW/sgdm weight decay for every variant (default 0: weight decay is not gauge invariant, so full and gauge-fixed compare only without it)", DefaultValueFactory = _ => 0.0 };
        var target = new Option<double?>("--target-loss") { Description = "val loss for 'steps to target' (default: 1.1 × the best mean final val loss of the grid)" };
        var threads = Threads();
        var cmd = new Command("symmetry", "Full vs gauge-fixed vs symmetry-broken (b_Q, b_Q+b_V) GPT-2, each with AdamW and ECD, over seeds; writes report.md and loss.png.");
        foreach (Option o in new Option[] { data, steps, seeds, outDir, layers, heads, dim, batch, seq, mlp, adamLr, ecdLr, ecdEta, ecdF0, optimizers, evalEvery, variants, wdOpt, target, threads })
            cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            ApplyThreads(r.GetValue(threads));
            string root = r.GetValue(outDir)!;
            Directory.CreateDirectory(root);
            var act = SymmetryBreakingConfig.ParseActivation(r.GetValue(mlp), "--mlp");
            var opts = r.GetValue(optimizers)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            foreach (var o in opts) SymmetryOptions.Kind(o);
            int nSeeds = r.GetValue(seeds), nSteps = r.GetValue(steps);
            if (nSeeds < 1) throw new InputException("--seeds: must be at least 1");
            var chosen = r.GetValue(variants)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(n => AllVariants.FirstOrDefault(v => v.Name == n) ?? throw new InputException($"--variants: unknown '{n}'; expected full, fixed, bq or bq+bv"))
                .Distinct().ToList();
            if (chosen.Count == 0) throw new InputException("--variants: name at least one of full, fixed, bq, bq+bv");
            double wd = r.GetValue(wdOpt);
            if (!(wd >= 0) || !double.IsFinite(wd)) throw new InputException($"--weight-decay: must be a non-negative number (got {wd})");
            if (chosen.Any(v => v.Fixed) && act == MlpActivation.Prelu)
                throw new InputException("--variants fixed: the gauge-fixed variant is GELU only (a PReLU MLP has per-unit scalings the canonical form does not fix); use --mlp gelu or drop 'fixed'");
            var runs = (from v in chosen from o in opts from s in Enumerable.Range(1, nSeeds) select (v, o, s)).ToList();
            var ops = CpuBackend<float>.Instance;
            int done = 0;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            int ranHere = 0;
            foreach (var (v, o, s) in runs)
            {
                string dir = Path.Combine(root, "runs", $"{v.Name}-{o}-s{s}");
                string resultPath = Path.Combine(dir, "result.json");
                done++;
                if (File.Exists(resultPath)) { Console.WriteLine($"[{done}/{runs.Count}] {v.Name} {o} seed {s}: done earlier, skipped"); continue; }
                var src = DataSources.Create(r.GetValue(data)!, s);
                var kind = SymmetryOptions.Kind(o);
                bool ecd = kind == OptimizerKind.Ecd;
                var opt = new OptimizerConfig(kind, WeightDecay: ecd ? 0 : wd, EcdEta: r.GetValue(ecdEta), EcdF0: r.GetValue(ecdF0));
                double lr = kind switch { OptimizerKind.Ecd => r.GetValue(ecdLr), OptimizerKind.Sgdm => 0.03, _ => r.GetValue(adamLr) };
                var tc = new TrainConfig(nSteps, r.GetValue(batch), r.GetValue(seq), lr, ecd ? 0 : null, MinLrFraction: ecd ? 1.0 : 0.1,
                    EvalEvery: r.GetValue(evalEvery), EvalBatches: 4, Seed: s, Optimizer: opt);
                var cfg0 = new Gpt2Config(src.VocabSize, r.GetValue(seq), r.GetValue(dim), r.GetValue(layers), r.GetValue(heads));
                cfg0.Validate("experiment flags");
                var cfg = cfg0 with
                {
                    SymmetryBreaking = v.Bq || v.Bv ? SymmetryBreakingConfig.Create(cfg0.HeadDim, v.Bq, v.Bv) : null,
                    MlpActivation = act,
                };
                string? ck = Trainer<float>.FindCheckpoint(dir);
                ILanguageModel<float> model;
                if (ck is not null) model = ModelFiles.Load(ck, ops);
                else { var g = new Gpt2<float>(cfg, ops); g.InitializeRandom(s); model = g; }
                var trainer = new Trainer<float>(model, src, tc, ops, dir);
                long fixedCount = 0;
                if (v.Fixed)
                {
                    // Canonicalise the initial model (or, resuming, read the run's gauge.json), install the skip kernels and
                    // restrict the optimizer's state to the free entries — before Resume reads the compact state back.
                    GaugeFixCommands.SetupTraining(model, dir, ck is not null, tc, null, quiet: true)(trainer);
                    fixedCount = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, GaugeFixCommands.GaugeFile)))!["fixed_count"]!.GetValue<long>();
                }
                if (ck is not null) trainer.Resume(ck);
                double eta = ranHere == 0 ? double.NaN : clock.Elapsed.TotalSeconds / ranHere * (runs.Count - done + 1);
                Console.WriteLine($"[{done}/{runs.Count}] {v.Name} {o} seed {s}{(ck is not null ? $" (resuming at step {trainer.StartStep})" : "")}{(double.IsNaN(eta) ? "" : $" · grid ETA {eta / 60:F1} min")}");
                int every = Math.Max(1, nSteps / 10);
                trainer.Stepped += rep =>
                {
                    if (rep.Step % every == 0 || rep.Step == nSteps)
                        Console.WriteLine($"    {Bar(rep.Step, nSteps)} step {rep.Step}/{nSteps} loss {Fmt(rep.Loss, "F3")} {Fmt(rep.TokensPerSecond, "F0")} tok/s");
                };
                trainer.Run();
                ranHere++;
                var times = trainer.History.Select(h => h.Milliseconds).Skip(Math.Min(2, trainer.History.Count / 2)).Order().ToArray();
                double median = times.Length > 0 ? times[times.Length / 2] : double.NaN;
                var metrics = TrainRun.ReadMetrics(Path.Combine(dir, Trainer<float>.MetricsFile));
                long parameters = model.Parameters.Sum(p => (long)p.Value.Length);
                // Moments as held (compact, free entries only, for the gauge-fixed variant).
                long stateBytes = trainer.Optimizer.StateScalars * sizeof(float);
                var res = new JsonObject
                {
                    ["variant"] = v.Name, ["optimizer"] = o, ["seed"] = s, ["steps"] = nSteps,
                    ["parameters"] = parameters, ["fixed"] = fixedCount, ["trainable"] = parameters - fixedCount,
                    ["optimizer_state_bytes"] = stateBytes, ["weight_decay"] = opt.WeightDecay,
                    ["median_step_ms"] = median, ["tokens_per_s"] = tc.Batch * tc.Seq / (median / 1000),
                    ["final_val_loss"] = metrics.Val.Count > 0 ? metrics.Val[^1].Item2 : double.NaN,
                    ["final_val_accuracy"] = metrics.Val.Count > 0 ? metrics.Val[^1].Item3 : double.NaN,
                    ["ecd_skipped"] = trainer.Optimizer.Ecd?.Skipped ?? 0,
                    ["val"] = new JsonArray([.. metrics.Val.Select(x => (JsonNode)new JsonArray(x.Item1, x.Item2))]),
                };
                File.WriteAllText(resultPath + ".tmp", res.ToJsonString() + "\n");
                File.Move(resultPath + ".tmp", resultPath, overwrite: true);
            }
            WriteReport(root, r, runs.Select(x => Path.Combine(root, "runs", $"{x.v.Name}-{x.o}-s{x.s}", "result.json")).ToList(), r.GetValue(target));
            Console.WriteLine($"wrote {root}/report.md and {root}/loss.png");
            return 0;
        });
        return cmd;
    }

    static string Bar(int i, int n) { int w = 20, f = (int)((long)w * i / n); return "[" + new string('#', f) + new string('.', w - f) + "]"; }

    static void WriteReport(string root, ParseResult r, List<string> resultFiles, double? target)
    {
        var results = resultFiles.Select(f => JsonNode.Parse(File.ReadAllText(f))!.AsObject()).ToList();
        var groups = results.GroupBy(o => ((string)o["variant"]!, (string)o["optimizer"]!)).ToList();
        double Mean(IEnumerable<double> xs) => xs.Average();
        double Std(IEnumerable<double> xs) { var a = xs.ToArray(); double m = a.Average(); return a.Length < 2 ? 0 : Math.Sqrt(a.Sum(x => (x - m) * (x - m)) / (a.Length - 1)); }
        double tgt = target ?? 1.1 * groups.Min(g => Mean(g.Select(o => (double)o["final_val_loss"]!)));
        var sb = new StringBuilder();
        sb.AppendLine("# Symmetry breaking experiment (arXiv 2601.22257)\n");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Command: `{RunInfo.CommandLine}` · commit {RunInfo.GitCommit} · {RunInfo.Cpu} · {Parallelism.Threads} threads · float32 CPU\n");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Seeds: {string.Join(", ", results.Select(o => (int)o["seed"]!).Distinct())} (each seed sets the initialisation, the data stream and the bias samples). Target loss for 'steps to target': {tgt:F4}{(target is null ? " (1.1 × the best mean final val loss)" : "")}.\n");
        var decays = results.Where(o => (string)o["optimizer"]! != "ecd").Select(o => (double?)o["weight_decay"] ?? 0.1).Distinct().ToList();
        if (decays.Count > 0)
            sb.AppendLine(CultureInfo.InvariantCulture, $"AdamW/sgdm weight decay: {string.Join(", ", decays)}{(decays.All(x => x == 0) ? " (weight decay is not gauge invariant; without it the full and gauge-fixed models train the same function class on an equal footing)" : "")}; ECD: none.\n");
        sb.AppendLine("| model | optimizer | trainable params | optimizer state | median step | tokens/s | final val loss (mean ± std) | steps to target (per seed) | ECD skipped steps |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---|---|---:|");
        foreach (var g in groups)
        {
            var o0 = g.First();
            var finals = g.Select(o => (double)o["final_val_loss"]!).ToArray();
            var reach = g.Select(o =>
            {
                foreach (var p in o["val"]!.AsArray()) if ((double)p![1]! <= tgt) return ((int)p[0]!).ToString(CultureInfo.InvariantCulture);
                return "—";
            });
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {g.Key.Item1} | {g.Key.Item2} | {(long?)o0["trainable"] ?? (long)o0["parameters"]!:N0} | {(long)o0["optimizer_state_bytes"]! / 1024.0:F0} KiB | {Mean(g.Select(o => (double)o["median_step_ms"]!)):F1} ms | {Mean(g.Select(o => (double)o["tokens_per_s"]!)):F0} | {Mean(finals):F4} ± {Std(finals):F4} | {string.Join(", ", reach)} | {g.Sum(o => (int)o["ecd_skipped"]!)} |");
        }
        sb.AppendLine("\nfull: the standard (symmetric) GPT-2; fixed: the same initial model in canonical form (`mt train --gauge-fixed`: identity blocks in W_Q and W_V per head, biases and LayerNorm gains folded), only the free entries trained (trainable = total − fixed entries; optimizer state for them only; the Q/V identity blocks skipped by the kernels); bq: q ← q + b_Q; bq+bv: also v ← v + b_V (b resampled every training forward, its mean at eval).\n");
        sb.AppendLine("![val loss](loss.png)");
        File.WriteAllText(Path.Combine(root, "report.md"), sb.ToString());

        var plt = new ScottPlot.Plot();
        foreach (var g in groups)
        {
            var curves = g.Select(o => o["val"]!.AsArray().Select(p => ((int)p![0]!, (double)p[1]!)).ToArray()).ToArray();
            int n = curves.Min(c => c.Length);
            var xs = Enumerable.Range(0, n).Select(i => (double)curves[0][i].Item1).ToArray();
            var ys = Enumerable.Range(0, n).Select(i => curves.Average(c => c[i].Item2)).ToArray();
            var s = plt.Add.Scatter(xs, ys);
            s.LegendText = $"{g.Key.Item1} {g.Key.Item2}";
            s.LineWidth = 2; s.MarkerSize = 4;
            if (g.Key.Item2 == "ecd") s.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plt.Title("val loss (mean over seeds)");
        plt.XLabel("step"); plt.YLabel("cross-entropy (nats/token)");
        plt.ShowLegend();
        plt.SavePng(Path.Combine(root, "loss.png"), 900, 540);
    }
}
