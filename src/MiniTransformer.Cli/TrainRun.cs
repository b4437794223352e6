using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;
using Spectre.Console;
using static MiniTransformer.Cli.Commands.Common;

namespace MiniTransformer.Cli;

/// <summary>
/// Runs a training job with live progress and writes the run folder: checkpoint/, metrics.jsonl, manifest.json,
/// loss.png and report.md. Shared by <c>mt train</c> and <c>mt demo</c>.
/// </summary>
static class TrainRun
{
    public sealed record Result(double TrainLoss, double ValLoss, double ValAccuracy, double MedianStepMs, double TokensPerSecond, IReadOnlyList<(string Prompt, string Sample)> Samples);

    public static Result Execute<F>(ILanguageModel<F> model, IDataSource data, TrainConfig config, IBackend<F> ops, string outDir,
        bool resume, string title, int samples = 3, Action<Trainer<F>>? setup = null) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var trainer = new Trainer<F>(model, data, config, ops, outDir);
        setup?.Invoke(trainer);
        if (resume)
        {
            var ck = Trainer<F>.FindCheckpoint(outDir) ?? throw new InputException($"--resume: no checkpoint in {outDir}");
            trainer.Resume(ck);
            AnsiConsole.MarkupLine($"[grey]resuming from {Markup.Escape(ck)} at step {trainer.StartStep}[/]");
        }
        Directory.CreateDirectory(outDir);
        var manifest = RunInfo.Manifest(config.Seed, Parallelism.Threads, new JsonObject
        {
            ["data"] = data.Spec,
            ["model"] = JsonNode.Parse(model.ConfigJson),
            ["dtype"] = typeof(F) == typeof(double) ? "f64" : "f32",
            ["backend"] = ops.Name,
            ["train"] = JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(config)),
            ["resumed_from_step"] = trainer.StartStep,
        });
        File.WriteAllText(Path.Combine(outDir, "manifest.json"), manifest.ToJsonString(new() { WriteIndented = true }));

        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(title)}[/]");
        AnsiConsole.MarkupLine($"  model  {Markup.Escape(model.Describe())} · {HumanCount(ParameterCount(model))} parameters · {ops.Name} · {Parallelism.Threads} threads");
        AnsiConsole.MarkupLine($"  data   {Markup.Escape(data.Describe())}");
        AnsiConsole.MarkupLine($"  train  {config.Steps} steps × {config.Batch}×{config.Seq} tokens{(config.GradAccum > 1 ? $" × {config.GradAccum} accum" : "")}, lr {config.LearningRate} ({config.ScheduleDescription})");

        trainer.Evaluated += e => AnsiConsole.MarkupLine(
            $"  step {e.Step,5}  train loss {Fmt(e.TrainLoss)}  val loss {Fmt(e.ValLoss)}  val accuracy {Fmt(100 * e.ValAccuracy, "F1")} %");
        if (AnsiConsole.Profile.Capabilities.Interactive)
        {
            AnsiConsole.Progress().AutoClear(true)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("training", maxValue: config.Steps);
                    task.Value = trainer.StartStep;
                    trainer.Stepped += r =>
                    {
                        task.Value = r.Step;
                        task.Description = $"step {r.Step} loss {Fmt(r.Loss, "F3")} {Fmt(r.TokensPerSecond, "F0")} tok/s";
                    };
                    trainer.Run();
                });
        }
        else
        {
            int every = Math.Max(1, config.Steps / 20);
            trainer.Stepped += r =>
            {
                if (r.Step % every == 0 || r.Step == config.Steps)
                    Console.WriteLine($"  step {r.Step,5}/{config.Steps}  loss {Fmt(r.Loss)}  lr {r.LearningRate:E2}  {Fmt(r.Milliseconds, "F1")} ms/step  {Fmt(r.TokensPerSecond, "F0")} tok/s");
            };
            trainer.Run();
        }

        var last = trainer.Evals.Count > 0 ? trainer.Evals[^1] : new EvalReport(0, double.NaN, double.NaN, double.NaN);
        var times = trainer.History.Select(h => h.Milliseconds).Skip(Math.Min(2, trainer.History.Count / 2)).Order().ToArray();
        double median = times.Length > 0 ? times[times.Length / 2] : double.NaN;
        double tps = config.Batch * config.Seq * config.GradAccum / (median / 1000);

        var tokenizer = data.Tokenizer;
        var sampled = new List<(string, string)>();
        if (data is MlmSource mlm) sampled.AddRange(FillMaskSamples(model, mlm, samples, Math.Min(config.Seq, model.MaxSequence)));
        else foreach (var prompt in data.SamplePrompts(samples))
        {
            var ids = tokenizer.Encode(prompt);
            if (ids.Length >= model.MaxSequence) continue;
            var output = Sampling.Generate(model, ids, Math.Min(48, model.MaxSequence - ids.Length), 0, 0, config.Seed,
                t => t == tokenizer.EndOfText);
            sampled.Add((prompt, tokenizer.Decode(output)));
        }
        var result = new Result(last.TrainLoss, last.ValLoss, last.ValAccuracy, median, tps, sampled);

        var metrics = ReadMetrics(Path.Combine(outDir, "metrics.jsonl"));
        Plots.Loss(metrics, Path.Combine(outDir, "loss.png"), title);
        File.WriteAllText(Path.Combine(outDir, "report.md"), Report(model, data, config, ops, result, title));

        if (sampled.Count > 0)
        {
            var table = data is MlmSource ? new Table().AddColumn("val input (masked)").AddColumn("model fills the chosen positions")
                : new Table().AddColumn("prompt").AddColumn("model continues (greedy)");
            foreach (var (p, s) in sampled) table.AddRow(Markup.Escape(Show(p)), Markup.Escape(Show(s)));
            AnsiConsole.Write(table);
        }
        if (data is MlmSource m)
            AnsiConsole.MarkupLine($"  masked-token accuracy {Fmt(100 * last.ValAccuracy, "F1")} % · chance {Fmt(100 * m.ChanceAccuracy, "F1")} % · always the most frequent masked token {Fmt(100 * m.MajorityAccuracy(config.EvalBatches, config.Batch, config.Seq), "F1")} %");
        AnsiConsole.MarkupLine($"  median step {Fmt(median, "F1")} ms · {Fmt(tps, "F0")} tokens/s");
        AnsiConsole.MarkupLine($"  wrote {Markup.Escape(outDir)}/ (checkpoint/, metrics.jsonl, manifest.json, loss.png, report.md)");
        return result;
    }

    static string Show(string s) => s.Replace("\n", "⏎");

    /// <summary>
    /// Masked-LM samples: val rows as the model sees them ([MASK] and replaced tokens) and the row with every chosen
    /// position filled by the model's most likely token.
    /// </summary>
    public static IEnumerable<(string Input, string Filled)> FillMaskSamples<F>(ILanguageModel<F> model, MlmSource data, int rows, int T)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (rows <= 0 || T < 3) yield break;
        var inputs = new int[rows * T];
        var targets = new int[rows * T];
        data.GetBatch(Split.Val, 0, rows, T, inputs, targets);
        model.Forward(inputs, null, rows, T);
        int V = model.VocabSize;
        var sp = data.Tokenizer.Special;
        for (int b = 0; b < rows; b++)
        {
            var row = inputs.AsSpan(b * T, T).ToArray();
            var filled = row.ToArray();
            for (int t = 0; t < T; t++)
                if (targets[b * T + t] != DataSources.Ignore)
                    filled[t] = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<F>(model.Logits.Data.AsSpan((b * T + t) * V, V));
            // drop [CLS] and [SEP] for display
            yield return (data.Tokenizer.Decode(row.AsSpan(1, T - 2)), data.Tokenizer.Decode(filled.AsSpan(1, T - 2)));
        }
    }

    /// <summary>(step, train loss) and (step, val loss, val accuracy) series from metrics.jsonl.</summary>
    public static (List<(int, double)> Train, List<(int, double, double)> Val) ReadMetrics(string path)
    {
        var train = new List<(int, double)>();
        var val = new List<(int, double, double)>();
        foreach (var line in File.ReadLines(path))
        {
            if (JsonNode.Parse(line) is not JsonObject o) continue;
            int step = (int)o["step"]!;
            if (o["loss"] is JsonNode l) train.Add((step, (double)l));
            if (o["val_loss"] is JsonNode v) val.Add((step, (double)v, (double)o["val_accuracy"]!));
        }
        return (train, val);
    }

    static long ParameterCount<F>(ILanguageModel<F> model) where F : unmanaged, IFloatingPointIeee754<F> =>
        model.Parameters.Sum(p => (long)p.Value.Length);

    static string Report<F>(ILanguageModel<F> model, IDataSource data, TrainConfig config, IBackend<F> ops, Result r, string title)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# {title}\n");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Command: `{RunInfo.CommandLine}` · commit {RunInfo.GitCommit} · {RunInfo.Cpu} · {Parallelism.Threads} threads · {ops.Name}\n");
        sb.AppendLine("| | |\n|---|---|");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| model | {model.Describe()} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| parameters | {ParameterCount(model):N0} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| data | {data.Describe()} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| training | {config.Steps} steps, batch {config.Batch}×{config.Seq}, AdamW lr {config.LearningRate}, warm-up {config.Warmup}, cosine to {config.MinLrFraction}×, wd {config.Opt.WeightDecay}, clip {config.Opt.GradClip}, seed {config.Seed} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| final train loss | {Fmt(r.TrainLoss)} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| final val loss | {Fmt(r.ValLoss)} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| final val accuracy | {Fmt(100 * r.ValAccuracy, "F2")} % |");
        if (data is MlmSource m)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| baselines (masked tokens) | chance {Fmt(100 * m.ChanceAccuracy, "F2")} %, always the most frequent {Fmt(100 * m.MajorityAccuracy(config.EvalBatches, config.Batch, config.Seq), "F2")} % |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| median step time | {Fmt(r.MedianStepMs, "F1")} ms ({Fmt(r.TokensPerSecond, "F0")} tokens/s) |");
        sb.AppendLine("\n![loss](loss.png)\n");
        if (r.Samples.Count > 0)
        {
            sb.AppendLine(data is MlmSource ? "## Fill-mask samples (val)\n\n| input | model's fill |\n|---|---|" : "## Samples (greedy)\n\n| prompt | continuation |\n|---|---|");
            foreach (var (p, s) in r.Samples) sb.AppendLine($"| `{Show(p).Replace("|", "\\|")}` | `{Show(s).Replace("|", "\\|")}` |");
        }
        return sb.ToString();
    }
}

static class Plots
{
    /// <summary>Train loss per step and val loss per evaluation, on one chart.</summary>
    public static void Loss((List<(int, double)> Train, List<(int, double, double)> Val) m, string path, string title)
    {
        var plt = new ScottPlot.Plot();
        if (m.Train.Count > 0)
        {
            var s = plt.Add.Scatter(m.Train.Select(x => (double)x.Item1).ToArray(), m.Train.Select(x => x.Item2).ToArray());
            s.LegendText = "train loss"; s.MarkerSize = 0; s.LineWidth = 1.5f;
        }
        if (m.Val.Count > 0)
        {
            var v = plt.Add.Scatter(m.Val.Select(x => (double)x.Item1).ToArray(), m.Val.Select(x => x.Item2).ToArray());
            v.LegendText = "val loss"; v.MarkerSize = 6; v.LineWidth = 2;
        }
        plt.Title(title);
        plt.XLabel("step");
        plt.YLabel("cross-entropy (nats/token)");
        plt.ShowLegend();
        plt.SavePng(path, 900, 540);
    }
}
