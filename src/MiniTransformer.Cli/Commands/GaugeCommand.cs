using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt gauge apply|verify|count</c>: exact symmetry transformations of a model's weights, invariance checks, and
/// flat-direction counts (analytic, and numeric from the exact float64 Jacobian).
/// </summary>
static class GaugeCommand
{
    static string Kinds => string.Join(",", GaugeKind.All.Select(k => k.Name));

    public static Command Create()
    {
        var cmd = new Command("gauge", "Gauge symmetries: apply them to a model, verify invariance, count flat directions.");
        cmd.Subcommands.Add(Apply());
        cmd.Subcommands.Add(Verify());
        cmd.Subcommands.Add(Count());
        cmd.Subcommands.Add(ConservedDemo());
        cmd.Subcommands.Add(GaugeFixCommands.Fix());
        cmd.Subcommands.Add(GaugeFixCommands.Diff());
        cmd.Subcommands.Add(GaugeFixCommands.BenchTrain());
        return cmd;
    }

    static Option<string> ModelOption() => new("--model") { Description = "model directory (config.json + model.safetensors)", Required = true };

    static Command Apply()
    {
        var model = ModelOption();
        var output = new Option<string>("--out") { Description = "output model directory (Hugging Face layout)", Required = true };
        var kinds = new Option<string>("--kinds") { Description = $"comma-separated kinds, applied in order: {Kinds}", Required = true };
        var seed = new Option<int>("--seed") { Description = "seed of the random group elements", DefaultValueFactory = _ => 1 };
        var dtype = new Option<string>("--dtype") { Description = "stored precision of the output: f32 or f64 (transforms are computed in f64)", DefaultValueFactory = _ => "f64" };
        var cmd = new Command("apply", "Apply random (seeded, well-conditioned) gauge transformations and write the transformed model.");
        foreach (Option o in new Option[] { model, output, kinds, seed, dtype }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            bool f64 = Common.IsF64(r.GetValue(dtype)!);
            var ks = GaugeKind.Parse(r.GetValue(kinds));
            var m = ModelFiles.Load(r.GetValue(model)!, CpuBackend<double>.Instance);
            var a = GaugeArch.For(m);
            foreach (var k in ks)
                if (!k.Applies(a)) throw new InputException($"--kinds {k.Name}: does not exist in a {(a.PreLn ? "pre-LN" : "post-LN")} {a.Arch} model");
            var p0 = ParamSet.From(m.Parameters);
            var p = p0.Clone();
            var rng = new Random(r.GetValue(seed));
            foreach (var k in ks)
            {
                if (!k.IsSymmetry(a, p))
                    throw new InputException($"--kinds {k.Name}: not a symmetry of this model (a tied GPT-2 with an element-wise ln_f gain); see 'mt gauge verify --kinds residual'");
                k.Apply(a, p, rng);
            }
            p.CopyTo(m.Parameters);
            string dir = r.GetValue(output)!;
            ModelFiles.Save(m, dir, f64 ? StDType.F64 : StDType.F32);
            Console.WriteLine($"applied {string.Join(",", ks.Select(k => k.Name))} (seed {r.GetValue(seed)}) to {m.Describe()}: " +
                $"weights moved by {Common.Fmt(p.Minus(p0).Norm() / p0.Norm(), "E2")} (relative); wrote {dir} ({(f64 ? "F64" : "F32")})");
            return 0;
        });
        return cmd;
    }

    static Command Verify()
    {
        var model = ModelOption();
        var kinds = new Option<string>("--kinds") { Description = $"comma-separated kinds (default: all): {Kinds}" };
        var dtype = new Option<string>("--dtype") { Description = "evaluation precision: f64 (threshold 1e-12) or f32 (1e-5)", DefaultValueFactory = _ => "f64" };
        var device = Common.Device();
        var seed = new Option<int>("--seed") { Description = "seed of the group elements, perturbation and inputs", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "print JSON instead of a table" };
        var cmd = new Command("verify", "Apply each kind on fresh random inputs; report the log-probability deviation next to a same-norm random perturbation's.");
        foreach (Option o in new Option[] { model, kinds, dtype, device, seed, json }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            bool f64 = Common.IsF64(r.GetValue(dtype)!);
            string dev = r.GetValue(device)!;
            var m = ModelFiles.Load(r.GetValue(model)!, CpuBackend<double>.Instance);
            var a = GaugeArch.For(m);
            string? list = r.GetValue(kinds);
            var ks = GaugeKind.Parse(list);
            if (string.IsNullOrWhiteSpace(list) || list == "all") ks = [.. ks.Where(k => k.Applies(a))];
            else foreach (var k in ks)
                    if (!k.Applies(a)) throw new InputException($"--kinds {k.Name}: does not exist in a {(a.PreLn ? "pre-LN" : "post-LN")} {a.Arch} model");
            int s = r.GetValue(seed);
            IBackend<double>? be64 = f64 ? Common.Backend<double>(dev) : null;
            IBackend<float>? be32 = f64 ? null : Common.Backend<float>(dev);
            var checks = ks.Select(k => be64 is not null ? Invariance.Check(m, k, s, be64) : Invariance.Check(m, k, s, be32!)).ToList();
            double tol = f64 ? 1e-12 : 1e-5;
            bool ok = checks.All(c => !c.Symmetry || c.MaxRel < tol);
            if (r.GetValue(json))
            {
                var o = new JsonObject();
                foreach (var c in checks)
                    o[c.Kind] = new JsonObject
                    {
                        ["max_abs"] = J(c.MaxAbs), ["max_rel"] = J(c.MaxRel), ["perturbation_rel"] = J(c.PerturbationRel),
                        ["symmetry"] = c.Symmetry, ["weight_change_rel"] = J(c.WeightChange),
                    };
                Console.WriteLine(new JsonObject { ["kinds"] = o, ["dtype"] = f64 ? "f64" : "f32", ["tolerance"] = tol, ["ok"] = ok }
                    .ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
            }
            else
            {
                string observed = a.EncoderOnly ? $"last hidden state{(HasPooler(a) ? " + pooler output" : "")}" : "log-probabilities";
                Console.WriteLine($"{m.Describe()} · {(f64 ? "float64" : "float32")} on {(be64 is not null ? be64.Name : be32!.Name)} · {observed} on 4 random sequences{(a.HasTypes ? " (random token types, one padded key)" : "")} · seed {s}");
                Console.WriteLine($"{"kind",-10} {"weights moved",13} {"max_abs",10} {"max_rel",10} {"random same-norm",17}  verdict");
                foreach (var c in checks)
                {
                    string verdict = c.Symmetry ? (c.MaxRel < tol ? $"invariant (< {tol:0e0})" : "FAILED") : "not a symmetry here (expected)";
                    Console.WriteLine($"{c.Kind,-10} {E(c.WeightChange),13} {E(c.MaxAbs),10} {E(c.MaxRel),10} {E(c.PerturbationRel),17}  {verdict}");
                }
            }
            return ok ? 0 : 1;
        });
        return cmd;
    }

    /// <summary>An encoder-only BERT's pooler (part of its outputs) shows as the reader of its last LayerNorm.</summary>
    static bool HasPooler(GaugeArch a) => a.EncoderOnly && a.MeanLns.Any(ln => ln.Readers.Any(r => r.Weight.StartsWith("bert.pooler", StringComparison.Ordinal)));

    static JsonNode? J(double v) => double.IsFinite(v) ? JsonValue.Create(v) : null;

    static string E(double v) => v.ToString("0.0E+00", CultureInfo.InvariantCulture);

    static Command Count()
    {
        var model = new Option<string>("--model") { Description = "model directory (config.json is enough without --numeric) or a config.json", Required = true };
        var numeric = new Option<bool>("--numeric") { Description = "also the rank deficiency of the exact float64 Jacobian (models up to 5000 parameters)" };
        var json = new Option<bool>("--json") { Description = "print JSON" };
        var seed = new Option<int>("--seed") { Description = "seed of the generic-point perturbation and the input sequences", DefaultValueFactory = _ => 1 };
        var spectrum = new Option<string>("--spectrum") { Description = "where --numeric writes the singular-value plot", DefaultValueFactory = _ => "spectrum.png" };
        var rows = new Option<double>("--rows-per-parameter") { Description = "Jacobian rows per parameter", DefaultValueFactory = _ => 3.0 };
        var pooler = new Option<bool>("--pooler") { Description = "bert, from a bare config.json: count a pooler (reported as unused; a model directory's weights say it themselves)" };
        var cmd = new Command("count", "Count flat directions: analytic per kind; with --numeric, from the exact Jacobian's singular values.");
        foreach (Option o in new Option[] { model, numeric, json, seed, spectrum, rows, pooler }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string path = r.GetValue(model)!;
            bool num = r.GetValue(numeric);
            ILanguageModel<double>? m = null;
            GaugeArch a;
            long parameters;
            string header;
            if (num)
            {
                m = ModelFiles.Load(path, CpuBackend<double>.Instance);
                a = GaugeArch.For(m);
                parameters = m.Parameters.Sum(p => (long)p.Value.Length);
            }
            else (a, parameters) = FromConfig(path, r.GetValue(pooler));
            header = a.Arch == "bert"
                ? $"BERT L={a.Layers} H={a.Heads} d={a.D} MLP={a.Ffn} V={a.Vocab} ctx={a.Positions} types={a.Types} ε={a.Eps}{(a.EncoderOnly ? " encoder-only" : a.Tied ? " tied" : " untied")}{(a.UnusedCount > 0 || HasPooler(a) ? " +pooler" : "")}: {parameters:N0} parameters"
                : $"GPT-2 L={a.Layers} H={a.Heads} d={a.D} MLP={a.Ffn} V={a.Vocab} ctx={a.Positions} ε={a.Eps}{(a.Tied ? " tied" : " untied")}: {parameters:N0} parameters";
            var an = FlatDirections.Analytic(a, (int)Math.Min(parameters, int.MaxValue));
            NumericCount? n = null;
            string generic = "";
            if (m is not null)
            {
                if (parameters > 5000)
                    throw new InputException($"--numeric: the model has {parameters} parameters; the exact Jacobian is for tiny models (at most 5000)");
                var p = ParamSet.From(m.Parameters);
                generic = FlatDirections.Genericize(p, r.GetValue(seed));
                p.CopyTo(m.Parameters);
                n = FlatDirections.Numeric(m, r.GetValue(seed), r.GetValue(rows));
                Plot(n, r.GetValue(spectrum)!, m.Describe());
            }
            if (r.GetValue(json))
            {
                var by = new JsonObject();
                foreach (var (k, v) in an.ByKind) by[k] = v;
                var o = new JsonObject
                {
                    ["parameters"] = parameters, ["analytic"] = an.Analytic, ["numeric"] = n?.Null, ["near_flat"] = an.NearFlat,
                    ["unused"] = an.Unused, ["by_kind"] = by,
                };
                if (n is not null)
                {
                    o["generic_point"] = generic;
                    o["jacobian_rows"] = n.Rows;
                    o["rank"] = n.Rank;
                    o["gap_ratio"] = n.GapRatio;
                    o["generators_in_null_space_max_ratio"] = n.Generators.Max(g => g.WorstRatio);
                    o["generators_rank"] = n.TangentRank;
                    o["near_flat_ratio"] = n.NearFlatRatio;
                }
                Console.WriteLine(o.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
                return 0;
            }
            Console.WriteLine(header);
            bool ok = true;
            Console.WriteLine($"{"kind",-10} {"flat",8}{(n is null ? "" : $" {"generators",11} {"rank added",10} {"max ‖J·t‖/(σ₁‖t‖)",19}")}");
            foreach (var k in GaugeKind.All.Where(k => k.Applies(a) || an.ByKind[k.Name] > 0))
            {
                var g = n?.Generators.First(x => x.Kind == k.Name);
                Console.WriteLine($"{k.Name,-10} {an.ByKind[k.Name],8}" + (g is null ? "" : $" {g.Generators,11} {g.Rank,10} {(g.Generators == 0 ? "-" : E(g.WorstRatio)),19}"));
            }
            string nearWhat = a.PreLn ? "the residual stream's scale" : "embedding and post-LN scales";
            Console.WriteLine($"analytic: {an.Analytic:N0} flat of {parameters - an.Unused:N0} parameters reaching the {(a.EncoderOnly ? "outputs (last hidden state" + (HasPooler(a) ? ", pooler output)" : ")") : "logits")}; near-flat {an.NearFlat} ({nearWhat}, exact only at ε = 0); unused {an.Unused:N0}{(an.Unused > 0 ? " (pooler: never reaches the MLM logits)" : "")}");
            if (n is not null)
            {
                Console.WriteLine($"generic point (seed {r.GetValue(seed)}): {generic}");
                Console.WriteLine($"numeric:  {n.Null} flat (Jacobian of the {(a.EncoderOnly ? "last hidden state and pooler outputs" : "log-softmax outputs")}, {n.Rows}×{n.Parameters}, float64: rank {n.Rank}, cut at the largest gap σ{n.Rank}/σ{n.Rank + 1} = {E(n.GapRatio)})");
                Console.WriteLine($"generators: {n.Generators.Sum(g => g.Generators)} tangent vectors span {n.TangentRank} dimensions, all in the null space (max ratio {E(n.Generators.Max(g => g.WorstRatio))}); near-flat directions: largest ratio {E(n.NearFlatRatio)}");
                // At a tiny ε (BERT's default 1e-12) the near-flat directions sit at the round-off floor with the null ones.
                bool withNear = n.Null == an.Analytic + an.NearFlat && n.NearFlatRatio < 1e-10;
                string verdict = n.Null == an.Analytic ? "analytic = numeric"
                    : withNear ? $"numeric = analytic + {an.NearFlat} near-flat: at ε = {a.Eps} they are numerically null (use a larger ε, e.g. 1e-3, to separate them)"
                    : "MISMATCH: analytic ≠ numeric";
                Console.WriteLine($"{verdict}; wrote {r.GetValue(spectrum)}");
                ok = (n.Null == an.Analytic || withNear) && n.TangentRank == an.Analytic;
            }
            return ok ? 0 : 1;
        });
        return cmd;
    }

    /// <summary>
    /// Conserved quantities under SGD and AdamW: the same tiny GPT-2 trained on synthetic:induction for a fixed training
    /// time τ = lr·steps (constant rate, no clipping, no weight decay) at several learning rates; the final drift
    /// ‖C − C₀‖/‖C₀‖ of the per-head quantities against the rate. SGD follows gradient flow ever more closely as the rate
    /// shrinks (drift ∝ lr); AdamW's flow is a different one and its drift stays put.
    /// </summary>
    static Command ConservedDemo()
    {
        var output = new Option<string>("--out") { Description = "folder for drift.png, drift.json and the runs", DefaultValueFactory = _ => "runs/conserved-demo" };
        var time = new Option<double>("--time") { Description = "training time τ = lr·steps, the same for every rate", DefaultValueFactory = _ => 1.0 };
        var lrs = new Option<string>("--lrs") { Description = "comma-separated learning rates", DefaultValueFactory = _ => "0.1,0.03,0.01,0.003,0.001,0.0003" };
        var seed = new Option<int>("--seed") { Description = "model and data seed", DefaultValueFactory = _ => 1 };
        var cmd = new Command("conserved-demo", "Drift of the conserved quantities vs learning rate for SGD and AdamW at a fixed training time; writes drift.png.");
        foreach (Option o in new Option[] { output, time, lrs, seed }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(output)!;
            double tau = r.GetValue(time);
            int sd = r.GetValue(seed);
            var rates = r.GetValue(lrs)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(x => double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0 ? v
                    : throw new InputException($"--lrs: '{x}' is not a positive number")).ToArray();
            if (!(tau > 0)) throw new InputException("--time: must be positive");
            Directory.CreateDirectory(dir);
            var ops = CpuBackend<double>.Instance;
            var results = new JsonArray();
            var series = new Dictionary<string, List<(double Lr, double Drift)>>();
            Console.WriteLine($"GPT-2 L=2 H=2 d=16 on synthetic:induction, float64, τ = lr·steps = {tau}, constant rate, no clipping, no weight decay");
            Console.WriteLine($"{"optimizer",-9} {"lr",8} {"steps",6} {"drift",10} {"qk",10} {"ov",10} {"max head",10} {"loss",8}");
            foreach (var (name, kind) in new[] { ("sgd", Training.OptimizerKind.Sgd), ("adamw", Training.OptimizerKind.AdamW) })
            {
                series[name] = [];
                foreach (double lr in rates)
                {
                    int steps = Math.Max(1, (int)Math.Round(tau / lr));
                    var data = MiniTransformer.Data.DataSources.Create("synthetic:induction", sd);
                    var model = new Gpt2<double>(new Gpt2Config(data.VocabSize, 16, 16, 2, 2, 1e-5, 64, true), ops);
                    model.InitializeRandom(sd);
                    var config = new Training.TrainConfig(steps, 4, 16, lr, WarmupSteps: 0, MinLrFraction: 1.0, EvalEvery: steps, EvalBatches: 1, Seed: sd,
                        Optimizer: new Training.OptimizerConfig(kind, WeightDecay: 0, GradClip: 0));
                    var tracker = new ConservedTracker<double>(model);
                    var trainer = new Training.Trainer<double>(model, data, config, ops, Path.Combine(dir, $"{name}-lr{lr.ToString(CultureInfo.InvariantCulture)}"));
                    double loss = double.NaN;
                    trainer.StepMetrics += (_, line) => { tracker.AddTo(line); loss = (double)line["loss"]!; };
                    trainer.Run();
                    var d = tracker.Drift();
                    series[name].Add((lr, d.Total));
                    Console.WriteLine($"{name,-9} {lr,8:G3} {steps,6} {E(d.Total),10} {E(d.Qk),10} {E(d.Ov),10} {E(d.MaxHead),10} {loss,8:F3}");
                    results.Add(new JsonObject { ["optimizer"] = name, ["lr"] = lr, ["steps"] = steps, ["drift"] = d.Total, ["drift_qk"] = d.Qk,
                        ["drift_ov"] = d.Ov, ["drift_max_head"] = d.MaxHead, ["final_loss"] = loss });
                }
            }
            File.WriteAllText(Path.Combine(dir, "drift.json"), new JsonObject { ["time"] = tau, ["runs"] = results }
                .ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
            var plt = new ScottPlot.Plot();
            foreach (var (name, pts) in series)
            {
                var sc = plt.Add.Scatter(pts.Select(p => Math.Log10(p.Lr)).ToArray(), pts.Select(p => Math.Log10(Math.Max(p.Drift, 1e-300))).ToArray());
                sc.LegendText = name == "sgd" ? "SGD" : "AdamW (no weight decay)";
                sc.MarkerSize = 7;
            }
            plt.Title($"Drift of the conserved quantities at fixed training time τ = lr·steps = {tau}");
            plt.XLabel("log10 learning rate");
            plt.YLabel("log10 ‖C − C₀‖ / ‖C₀‖");
            plt.ShowLegend();
            string png = Path.Combine(dir, "drift.png");
            plt.SavePng(png, 900, 540);
            // Slopes of log drift against log lr (least squares) over the three smallest rates: the limit lr → 0.
            foreach (var (name, all) in series.Where(x => x.Value.Count > 1))
            {
                var pts = all.OrderBy(p => p.Lr).Take(3).ToList();
                var xs = pts.Select(p => Math.Log10(p.Lr)).ToArray(); var ys = pts.Select(p => Math.Log10(p.Drift)).ToArray();
                double mx = xs.Average(), my = ys.Average();
                double slope = xs.Zip(ys).Sum(t => (t.First - mx) * (t.Second - my)) / xs.Sum(x => (x - mx) * (x - mx));
                Console.WriteLine($"{name}: drift ∝ lr^{slope:F2} over the three smallest rates");
            }
            Console.WriteLine($"wrote {png} and {Path.Combine(dir, "drift.json")}");
            return 0;
        });
        return cmd;
    }

    /// <summary>The architecture from config.json alone (a directory or the file); BERT's pooler from the weights' names when present.</summary>
    static (GaugeArch, long) FromConfig(string path, bool pooler)
    {
        string cfg = Directory.Exists(path) ? Path.Combine(path, ModelFiles.ConfigFile) : path;
        if (!File.Exists(cfg)) throw new InputException($"{path}: no {ModelFiles.ConfigFile}");
        string text = File.ReadAllText(cfg);
        string? type = null;
        try { type = JsonNode.Parse(text)?["model_type"]?.GetValue<string>(); } catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException) { }
        if (type == "bert")
        {
            var c = BertConfig.FromJson(text, cfg);
            string weights = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(cfg))!, ModelFiles.WeightsFile);
            if (!pooler && File.Exists(weights))
                pooler = SafeTensors.Read(weights).Tensors.Any(t => ModelFiles.BertCanonicalName(t.Name).StartsWith("bert.pooler.", StringComparison.Ordinal));
            c = c with { Pooler = pooler };
            return (GaugeArch.ForBert(c), c.ParameterCount);
        }
        if (pooler) throw new InputException("--pooler: only BERT has a pooler");
        var g = Gpt2Config.FromJson(text, cfg);
        return (GaugeArch.ForGpt2(g), g.ParameterCount);
    }

    static void Plot(NumericCount n, string path, string title)
    {
        var plt = new ScottPlot.Plot();
        double smax = n.Singular[0];
        var xs = Enumerable.Range(1, n.Singular.Length).Select(i => (double)i).ToArray();
        var ys = n.Singular.Select(s => Math.Log10(Math.Max(s / smax, 1e-20))).ToArray();
        var sc = plt.Add.Scatter(xs, ys);
        sc.LineWidth = 0;
        sc.MarkerSize = 4;
        var cut = plt.Add.VerticalLine(n.Rank + 0.5);
        cut.LegendText = $"cut: rank {n.Rank}, {n.Null} flat (gap ×{n.GapRatio:0.0E+0})";
        plt.Title($"Jacobian singular values · {title}");
        plt.XLabel("index i");
        plt.YLabel("log10 σ_i / σ_1");
        plt.ShowLegend();
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        plt.SavePng(path, 900, 540);
    }
}
