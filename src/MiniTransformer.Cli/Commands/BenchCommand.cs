using System.CommandLine;
using System.Diagnostics;
using System.Numerics;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Training;
using Spectre.Console;

namespace MiniTransformer.Cli.Commands;

/// <summary><c>mt bench train</c>: end-to-end training-step time (forward + backward + AdamW) on random weights and tokens.</summary>
static class BenchCommand
{
    public static Gpt2Config Preset(string name, int vocabForDemo) => name switch
    {
        "gpt2-124m" => new Gpt2Config(50257, 1024, 768, 12, 12),
        "demo" => DemoCommand.ModelConfig(vocabForDemo),
        _ => throw new InputException($"--preset: unknown preset '{name}'; expected gpt2-124m or demo"),
    };

    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "gpt2-124m or demo", DefaultValueFactory = _ => "gpt2-124m" };
        var batch = new Option<int>("--batch") { Description = "B", DefaultValueFactory = _ => 4 };
        var seq = new Option<int>("--seq") { Description = "T", DefaultValueFactory = _ => 64 };
        var steps = new Option<int>("--steps") { Description = "timed steps (after 2 warm-up steps)", DefaultValueFactory = _ => 5 };
        var json = new Option<bool>("--json") { Description = "print one JSON object instead of a table" };
        var dtype = Common.Dtype();
        var threads = Common.Threads();
        var train = new Command("train", "Time full training steps of a GPT-2 preset.");
        foreach (Option o in new Option[] { preset, batch, seq, steps, json, dtype, threads }) train.Options.Add(o);
        train.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            var cfg = Preset(r.GetValue(preset)!, Data.DataSources.Create("synthetic:induction", 1).VocabSize);
            var args = (r.GetValue(preset)!, cfg, r.GetValue(batch), r.GetValue(seq), r.GetValue(steps), r.GetValue(json));
            if (Common.IsF64(r.GetValue(dtype)!)) Run(CpuBackend<double>.Instance, args);
            else Run(CpuBackend<float>.Instance, args);
            return 0;
        });
        var cmd = new Command("bench", "Benchmarks (per-op micro-benchmarks live in bench/, run with BenchmarkDotNet).");
        cmd.Subcommands.Add(train);
        return cmd;
    }

    static void Run<F>(IBackend<F> ops, (string Preset, Gpt2Config Cfg, int B, int T, int Steps, bool Json) a)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (a.B <= 0 || a.T <= 0 || a.T > a.Cfg.NPositions) throw new InputException($"--batch/--seq: need B > 0 and 0 < T ≤ {a.Cfg.NPositions}");
        if (a.Steps <= 0) throw new InputException("--steps: must be positive");
        var model = new Gpt2<F>(a.Cfg, ops);
        model.InitializeRandom(1);
        var opt = new Optimizer<F>(model.Parameters, new OptimizerConfig(), ops);
        var rng = new Random(2);
        int n = a.B * a.T;
        var ids = new int[n];
        var targets = new int[n];
        for (int i = 0; i < n; i++) { ids[i] = rng.Next(a.Cfg.VocabSize); targets[i] = rng.Next(a.Cfg.VocabSize); }
        var times = new List<double>();
        double fwd = 0;
        for (int s = 0; s < a.Steps + 2; s++)
        {
            var sw = Stopwatch.StartNew();
            opt.ZeroGrad();
            var (sum, count) = model.Forward(ids, targets, a.B, a.T);
            double tf = sw.Elapsed.TotalMilliseconds;
            model.Backward(1.0 / count);
            opt.Update(1e-4);
            sw.Stop();
            if (s >= 2) { times.Add(sw.Elapsed.TotalMilliseconds); fwd += tf; }
        }
        times.Sort();
        double median = times[times.Count / 2];
        long peak = Process.GetCurrentProcess().PeakWorkingSet64;
        // Training FLOPs ≈ 6·(non-embedding params + output map)·tokens + attention 12·L·T·d·tokens (forward 1/3 of it).
        double flops = 6.0 * (a.Cfg.ParameterCount - (long)a.Cfg.NPositions * a.Cfg.NEmbd) * n + 12.0 * a.Cfg.NLayer * a.T * a.Cfg.NEmbd * n;
        var o = new JsonObject
        {
            ["preset"] = a.Preset, ["dtype"] = typeof(F) == typeof(double) ? "f64" : "f32", ["batch"] = a.B, ["seq"] = a.T,
            ["threads"] = Parallelism.Threads, ["steps"] = a.Steps,
            ["ms_per_step_median"] = Math.Round(median, 2), ["ms_per_step_min"] = Math.Round(times[0], 2),
            ["forward_ms_mean"] = Math.Round(fwd / a.Steps, 2),
            ["tokens_per_s"] = Math.Round(n / (median / 1000), 1),
            ["gflop_per_step"] = Math.Round(flops / 1e9, 2), ["gflops"] = Math.Round(flops / 1e9 / (median / 1000), 1),
            ["peak_memory_mb"] = peak / (1 << 20), ["cpu"] = RunInfo.Cpu,
        };
        if (a.Json) { Console.WriteLine(o.ToJsonString()); return; }
        var table = new Table().AddColumn("metric").AddColumn("value");
        foreach (var (k, v) in o) table.AddRow(k, v?.ToString() ?? "");
        AnsiConsole.Write(table);
    }
}
