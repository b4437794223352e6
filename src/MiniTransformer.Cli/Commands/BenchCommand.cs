using System.CommandLine;
using System.Diagnostics;
using System.Numerics;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;
using MiniTransformer.Training;
using Spectre.Console;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt bench train</c>: end-to-end training-step time (forward + backward + AdamW) on random weights and tokens;
/// <c>mt bench matmul</c>: GFLOP/s of one square product; <c>mt bench ops</c>: forward + backward time of each op at
/// GPT-2 124M shapes (what bench/compare/ sets against PyTorch).
/// </summary>
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
        var cmd = new Command("bench", "Benchmarks (per-op micro-benchmarks also live in bench/, run with BenchmarkDotNet).");
        cmd.Subcommands.Add(TrainCommand());
        cmd.Subcommands.Add(MatmulCommand());
        cmd.Subcommands.Add(OpsCommand());
        return cmd;
    }

    static Command TrainCommand()
    {
        var preset = new Option<string>("--preset") { Description = "gpt2-124m or demo", DefaultValueFactory = _ => "gpt2-124m" };
        var batch = new Option<int>("--batch") { Description = "B", DefaultValueFactory = _ => 4 };
        var seq = new Option<int>("--seq") { Description = "T", DefaultValueFactory = _ => 64 };
        var steps = new Option<int>("--steps") { Description = "timed steps (after 2 warm-up steps)", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "untimed warm-up steps", DefaultValueFactory = _ => 2 };
        var json = new Option<bool>("--json") { Description = "print one JSON object instead of a table" };
        var profile = new Option<bool>("--profile") { Description = "also time every op family (adds a little overhead)" };
        var dtype = Common.Dtype();
        var device = Common.Device();
        var threads = Common.Threads();
        var train = new Command("train", "Time full training steps of a GPT-2 preset (CPU, or --device cuda).");
        foreach (Option o in new Option[] { preset, batch, seq, steps, warmup, json, profile, dtype, device, threads }) train.Options.Add(o);
        train.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            var cfg = Preset(r.GetValue(preset)!, Data.DataSources.Create("synthetic:induction", 1).VocabSize);
            var args = new TrainArgs(r.GetValue(preset)!, cfg, r.GetValue(batch), r.GetValue(seq), r.GetValue(steps),
                r.GetValue(warmup), r.GetValue(json), r.GetValue(profile));
            string dt = r.GetValue(dtype)!, dev = r.GetValue(device)!;
            if (Common.IsF64(dt, allowBf16: true)) RunTrain(Common.Backend<double>(dev), args);
            else
            {
                var ops = Common.Backend<float>(dev, dt);
                try { RunTrain(ops, args); }
                finally { (ops as IDisposable)?.Dispose(); }
            }
            return 0;
        });
        return train;
    }

    sealed record TrainArgs(string Preset, Gpt2Config Cfg, int B, int T, int Steps, int Warmup, bool Json, bool Profile);

    static void RunTrain<F>(IBackend<F> ops, TrainArgs a) where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (a.B <= 0 || a.T <= 0 || a.T > a.Cfg.NPositions) throw new InputException($"--batch/--seq: need B > 0 and 0 < T ≤ {a.Cfg.NPositions}");
        if (a.Steps <= 0) throw new InputException("--steps: must be positive");
        if (a.Warmup < 0) throw new InputException("--warmup: must not be negative");
        var prof = a.Profile ? new ProfilingBackend<F>(ops) : null;
        IBackend<F> use = prof ?? ops;
        var model = new Gpt2<F>(a.Cfg, use);
        model.InitializeRandom(1);
        var opt = new Optimizer<F>(model.Parameters, new OptimizerConfig(), use);
        var rng = new Random(2);
        int n = a.B * a.T;
        var ids = new int[n];
        var targets = new int[n];
        for (int i = 0; i < n; i++) { ids[i] = rng.Next(a.Cfg.VocabSize); targets[i] = rng.Next(a.Cfg.VocabSize); }
        var times = new List<double>();
        var fwdTimes = new List<double>();
        double zeroMs = 0, updMs = 0;
        for (int s = 0; s < a.Steps + a.Warmup; s++)
        {
            if (s == a.Warmup) prof?.Reset();
            var sw = Stopwatch.StartNew();
            opt.ZeroGrad();
            double tz = sw.Elapsed.TotalMilliseconds;
            var (sum, count) = model.Forward(ids, targets, a.B, a.T);
            double tf = sw.Elapsed.TotalMilliseconds;
            model.Backward(1.0 / count);
            double tb = sw.Elapsed.TotalMilliseconds;
            opt.Update(1e-4);
            sw.Stop();
            if (s >= a.Warmup)
            {
                times.Add(sw.Elapsed.TotalMilliseconds); fwdTimes.Add(tf - tz);
                zeroMs += tz; updMs += sw.Elapsed.TotalMilliseconds - tb;
            }
        }
        double median = Median(times);
        long peak = Process.GetCurrentProcess().PeakWorkingSet64;
        // Training FLOPs ≈ 6·(non-embedding params + output map)·tokens + attention 12·L·T·d·tokens (forward 1/3 of it).
        double flops = 6.0 * (a.Cfg.ParameterCount - (long)a.Cfg.NPositions * a.Cfg.NEmbd) * n + 12.0 * a.Cfg.NLayer * a.T * a.Cfg.NEmbd * n;
        var o = new JsonObject
        {
            ["preset"] = a.Preset, ["dtype"] = StorageName(ops), ["backend"] = ops.Name, ["batch"] = a.B, ["seq"] = a.T,
            ["threads"] = Parallelism.Threads, ["steps"] = a.Steps,
            ["ms_per_step"] = Math.Round(median, 2),
            ["ms_per_step_median"] = Math.Round(median, 2), ["ms_per_step_min"] = Math.Round(times.Min(), 2),
            ["ms_per_step_max"] = Math.Round(times.Max(), 2),
            ["forward_ms"] = Math.Round(Median(fwdTimes), 2),
            ["forward_ms_mean"] = Math.Round(fwdTimes.Average(), 2),
            ["zero_grad_ms_mean"] = Math.Round(zeroMs / a.Steps, 2),
            ["optimizer_ms_mean"] = Math.Round(updMs / a.Steps, 2),
            ["tokens_per_s"] = Math.Round(n / (median / 1000), 1),
            ["gflop_per_step"] = Math.Round(flops / 1e9, 2), ["gflops"] = Math.Round(flops / 1e9 / (median / 1000), 1),
            ["peak_bytes"] = peak,
            ["peak_memory_mb"] = peak / (1 << 20), ["cpu"] = RunInfo.Cpu,
        };
        if (prof is not null)
        {
            var p = new JsonObject();
            foreach (var (k, v) in prof.Totals.OrderByDescending(kv => kv.Value.Ms))
                p[k] = Math.Round(v.Ms / a.Steps, 2);
            o["profile_ms_per_step"] = p;
        }
        if (a.Json) { Console.WriteLine(o.ToJsonString()); return; }
        var table = new Table().AddColumn("metric").AddColumn("value");
        foreach (var (k, v) in o)
            if (v is JsonObject sub)
                foreach (var (k2, v2) in sub) table.AddRow(Markup.Escape($"{k}: {k2}"), v2?.ToString() ?? "");
            else table.AddRow(k, Markup.Escape(v?.ToString() ?? ""));
        AnsiConsole.Write(table);
    }

    static string StorageName<F>(IBackend<F> ops) where F : unmanaged, IFloatingPointIeee754<F> =>
        typeof(F) == typeof(double) ? "f64" : ops is Backends.Cuda.CudaBackend { Storage: DType.BF16 } ? "bf16" : "f32";

    static double Median(List<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : 0.5 * (s[s.Count / 2 - 1] + s[s.Count / 2]);
    }

    // ---------------------------------------------------------------- mt bench matmul

    static Command MatmulCommand()
    {
        var size = new Option<int>("--n") { Description = "square size: C[n,n] = A[n,n]·B[n,n]", DefaultValueFactory = _ => 2048 };
        var reps = new Option<int?>("--reps") { Description = "timed repetitions (default: about 20 GFLOP of work, 3 to 20)" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var dtype = Common.Dtype();
        var threads = Common.Threads();
        var cmd = new Command("matmul", "GFLOP/s of one square matrix product (f32 unless --dtype f64).");
        foreach (Option o in new Option[] { size, reps, json, dtype, threads }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            int n = r.GetValue(size);
            if (n <= 0 || (long)n * n > Array.MaxLength) throw new InputException($"--n: must be positive and n² must fit an array (got {n})");
            int rr = r.GetValue(reps) ?? (int)Math.Clamp(2e10 / (2.0 * n * n * n), 3, 20);
            if (rr <= 0) throw new InputException("--reps: must be positive");
            bool f64 = Common.IsF64(r.GetValue(dtype)!);
            var (med, min) = f64 ? TimeMatmul<double>(n, rr) : TimeMatmul<float>(n, rr);
            double fl = 2.0 * n * n * (double)n;
            var o = new JsonObject
            {
                ["n"] = n, ["dtype"] = f64 ? "f64" : "f32", ["threads"] = Gemm.MaxThreads, ["reps"] = rr,
                ["ms"] = Math.Round(med, 3), ["gflops"] = Math.Round(fl / (med / 1000) / 1e9, 1),
                ["gflops_best"] = Math.Round(fl / (min / 1000) / 1e9, 1), ["cpu"] = RunInfo.Cpu,
            };
            if (r.GetValue(json)) Console.WriteLine(o.ToJsonString());
            else Console.WriteLine($"matmul {n}³ {(f64 ? "f64" : "f32")}, {Gemm.MaxThreads} threads: {o["gflops"]} GFLOP/s (median of {rr}; best {o["gflops_best"]})");
            return 0;
        });
        return cmd;
    }

    static (double Median, double Min) TimeMatmul<T>(int n, int reps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var rng = new Random(1);
        var a = new T[n * n]; var b = new T[n * n]; var c = new T[n * n];
        for (int i = 0; i < a.Length; i++) { a[i] = T.CreateTruncating(rng.NextDouble() - 0.5); b[i] = T.CreateTruncating(rng.NextDouble() - 0.5); }
        // Warm-up: at least one call and half a second, so the JIT has promoted the packing loops to optimised code.
        var warm = Stopwatch.StartNew();
        do Gemm.Multiply<T>(false, false, n, n, n, a, n, b, n, c, n, accumulate: false);
        while (warm.Elapsed.TotalSeconds < 0.5);
        var times = new List<double>();
        for (int i = 0; i < reps; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            Gemm.Multiply<T>(false, false, n, n, n, a, n, b, n, c, n, accumulate: false);
            times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
        }
        return (Median(times), times.Min());
    }

    // ---------------------------------------------------------------- mt bench ops

    static Command OpsCommand()
    {
        var reps = new Option<int>("--reps") { Description = "timed repetitions per op (median quoted)", DefaultValueFactory = _ => 10 };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var dtype = Common.Dtype();
        var device = Common.Device();
        var threads = Common.Threads();
        var cmd = new Command("ops", "Forward + backward time of each op at GPT-2 124M shapes (B=4, T=64, d=768, 12 heads, V=50257).");
        foreach (Option o in new Option[] { reps, json, dtype, device, threads }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            int rr = r.GetValue(reps);
            if (rr <= 0) throw new InputException("--reps: must be positive");
            string dt = r.GetValue(dtype)!, dev = r.GetValue(device)!;
            bool f64 = Common.IsF64(dt, allowBf16: true);
            IBackend<double>? b64 = f64 ? Common.Backend<double>(dev) : null;
            IBackend<float>? b32 = f64 ? null : Common.Backend<float>(dev, dt);
            var ms = b64 is not null ? OpTimings(b64, rr) : OpTimings(b32!, rr);
            var o = new JsonObject
            {
                ["dtype"] = b64 is not null ? "f64" : StorageName(b32!), ["backend"] = b64?.Name ?? b32!.Name,
                ["threads"] = Parallelism.Threads, ["reps"] = rr, ["cpu"] = RunInfo.Cpu,
            };
            (b32 as IDisposable)?.Dispose();
            var ops = new JsonObject();
            foreach (var (k, v) in ms) ops[k] = Math.Round(v, 3);
            o["ops_ms"] = ops;
            if (r.GetValue(json)) { Console.WriteLine(o.ToJsonString()); return 0; }
            var table = new Table().AddColumn("op (fwd+bwd)").AddColumn("ms (median)");
            foreach (var (k, v) in ms) table.AddRow(k, v.ToString("F3", System.Globalization.CultureInfo.InvariantCulture));
            AnsiConsole.Write(table);
            return 0;
        });
        return cmd;
    }

    /// <summary>Median forward+backward milliseconds per op, at the shapes one GPT-2 124M step (B=4, T=64) uses.</summary>
    public static List<(string Op, double Ms)> OpTimings<F>(IBackend<F> ops, int reps) where F : unmanaged, IFloatingPointIeee754<F>
    {
        const int B = 4, T = 64, C = 768, NH = 12, V = 50257;
        const int N = B * T;
        var rng = new Random(3);
        Tensor<F> Rand(double scale, params int[] shape)
        {
            var t = new Tensor<F>(shape);
            for (int i = 0; i < t.Length; i++) t.Data[i] = F.CreateTruncating(scale * (rng.NextDouble() * 2 - 1));
            return t;
        }
        // A device backend queues its kernels: each timed call ends with the device synchronized.
        Action sync = ops is Backends.Cuda.CudaBackend cuda ? cuda.Device.Synchronize : () => { };
        double Time(Action op)
        {
            void body() { op(); sync(); }
            // Warm up until the JIT has promoted the kernels to optimised code (tiering needs ~30 calls, and waits
            // while start-up code is still being compiled): at least two calls and half a second.
            var warm = Stopwatch.StartNew();
            for (int i = 0; i < 2 || (i < 5000 && warm.Elapsed.TotalSeconds < 0.5); i++) body();
            var ts = new List<double>();
            var timed = Stopwatch.StartNew();
            for (int i = 0; i < reps || (i < 1000 && timed.Elapsed.TotalSeconds < 0.2); i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                body();
                ts.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            return Median(ts);
        }
        var res = new List<(string, double)>();
        {
            var x = Rand(1, N, C); var y = new Tensor<F>(N, C); var g = Rand(1, C); var bb = Rand(1, C);
            var mean = new Tensor<F>(N); var rstd = new Tensor<F>(N); var dy = Rand(1, N, C);
            var dx = new Tensor<F>(N, C); var dg = new Tensor<F>(C); var db = new Tensor<F>(C);
            res.Add(("layernorm", Time(() =>
            {
                ops.LayerNormForward(y, mean, rstd, x, g, bb, N, C, 1e-5);
                ops.LayerNormBackward(dx, dg, db, dy, x, g, mean, rstd, N, C);
            })));
        }
        {
            int n = N * 4 * C;
            var x = Rand(3, n); var y = new Tensor<F>(n); var dy = Rand(1, n); var dx = new Tensor<F>(n);
            res.Add(("gelu", Time(() => { ops.GeluForward(y, x, n, GeluForm.Tanh); ops.GeluBackward(dx, dy, x, n, GeluForm.Tanh); })));
        }
        {
            var qkv = Rand(1, B, T, 3 * C); var y = new Tensor<F>(B, T, C); var lse = new Tensor<F>(B, NH, T);
            var att = ops.AttentionBackwardReadsPattern ? new Tensor<F>(B, NH, T, T) : null;   // as training does
            var dy = Rand(1, B, T, C); var dqkv = new Tensor<F>(B, T, 3 * C);
            res.Add(("attention", Time(() =>
            {
                ops.AttentionForward(y, att, lse, qkv, default, B, T, C, NH, causal: true);
                ops.AttentionBackward(dqkv, dy, qkv, y, att, lse, default, B, T, C, NH, causal: true);
            })));
        }
        var W = Rand(0.02, V, C);
        {
            var logits = Rand(4, N, V); var lse = new Tensor<F>(N); var dl = new Tensor<F>(N, V);
            var tg = new int[N];
            for (int i = 0; i < N; i++) tg[i] = rng.Next(V);
            res.Add(("softmax_ce", Time(() =>
            {
                ops.CrossEntropyForward(lse, logits, tg, N, V);
                ops.CrossEntropyBackward(dl, logits, lse, tg, N, V, 1.0 / N);
            })));
            var x = Rand(1, N, C); var dx = new Tensor<F>(N, C); var dW = new Tensor<F>(V, C);
            res.Add(("lm_head_matmul", Time(() =>
            {
                ops.MatmulForward(logits, x, W, null, N, C, V, WeightLayout.OutIn);
                ops.MatmulBackward(dx, dW, null, dl, x, W, N, C, V, WeightLayout.OutIn);
            })));
        }
        {
            var Wfc = Rand(0.02, 4 * C, C); var x = Rand(1, N, C); var y = new Tensor<F>(N, 4 * C); var dy = Rand(1, N, 4 * C);
            var dx = new Tensor<F>(N, C); var dW = new Tensor<F>(4 * C, C);
            res.Add(("fc_matmul", Time(() =>
            {
                ops.MatmulForward(y, x, Wfc, null, N, C, 4 * C, WeightLayout.OutIn);
                ops.MatmulBackward(dx, dW, null, dy, x, Wfc, N, C, 4 * C, WeightLayout.OutIn);
            })));
        }
        W = null!;
        {
            // AdamW over 124M parameters as one tensor, gradient zeroed after (what a training step does)
            const int P = 124_439_808;
            var p = new Tensor<F>(P); var gr = Rand(1e-3, P); var m = new Tensor<F>(P); var v = new Tensor<F>(P);
            int step = 0;
            int saved = reps;
            reps = Math.Max(3, reps / 3);
            res.Add(("adamw_124m", Time(() =>
                ops.AdamWZeroGrad(p, gr, m, v, new AdamWStep(1e-4, 0.9, 0.95, 1e-8, 0.1, ++step), zeroGrad: false))));
            reps = saved;
        }
        return res;
    }
}
