using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Training;

/// <summary>What the trainer reports after every step and evaluation.</summary>
public sealed record StepReport(int Step, double Loss, double LearningRate, double GradNorm, double Milliseconds, double TokensPerSecond);
public sealed record EvalReport(int Step, double ValLoss, double ValAccuracy, double TrainLoss);

/// <summary>
/// The training loop: gradient accumulation, global-norm clipping, warm-up + cosine LR, held-out evaluation,
/// <c>metrics.jsonl</c>, and checkpoints that resume exactly. Batches are a pure function of (seed, split, index)
/// and there is no dropout, so a resumed run replays the same steps bit for bit.
/// </summary>
public sealed class Trainer<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    public const string CheckpointDir = "checkpoint";
    const string StateFile = "trainer_state.safetensors";
    public const string DataFile = "data.json";

    readonly ILanguageModel<F> model;
    readonly IDataSource data;
    readonly TrainConfig config;
    readonly IBackend<F> ops;
    readonly string outDir;
    readonly Optimizer<F> optimizer;

    public Trainer(ILanguageModel<F> model, IDataSource data, TrainConfig config, IBackend<F> ops, string outDir)
    {
        config.Validate();
        if (config.Seq > model.MaxSequence)
            throw new InputException($"--seq: {config.Seq} exceeds the model's context ({model.MaxSequence})");
        if (data.VocabSize > model.VocabSize)
            throw new InputException($"--data: {data.Spec} needs a vocabulary of {data.VocabSize}, the model has {model.VocabSize}");
        // Fail up front, before the gradients, moments and activations are allocated, if the run cannot fit.
        MemoryEstimate.ForModel(model, config).EnsureFits($"training {model.Describe()}");
        this.model = model; this.data = data; this.config = config; this.ops = ops; this.outDir = outDir;
        optimizer = new Optimizer<F>(model.Parameters, config.Opt, ops);
    }

    /// <summary>First step to run (non-zero after <see cref="Resume"/>).</summary>
    public int StartStep { get; private set; }
    /// <summary>The optimizer (e.g. for ECD's skipped-step count).</summary>
    public Optimizer<F> Optimizer => optimizer;
    public List<StepReport> History { get; } = [];
    public List<EvalReport> Evals { get; } = [];

    public event Action<StepReport>? Stepped;
    /// <summary>
    /// Called after each optimizer step with the step number and its metrics.jsonl line before it is written: handlers
    /// may add fields (e.g. <c>mt train --track-conserved</c>'s conserved-quantity drift).
    /// </summary>
    public event Action<int, JsonObject>? StepMetrics;
    public event Action<EvalReport>? Evaluated;

    /// <summary>Runs the remaining steps; evaluates and checkpoints every EvalEvery steps and at the end.</summary>
    public void Run(CancellationToken cancel = default)
    {
        Directory.CreateDirectory(outDir);
        int B = config.Batch, T = config.Seq;
        var inputs = new int[B * T];
        var targets = new int[B * T];
        string metricsPath = Path.Combine(outDir, MetricsFile);
        if (StartStep > 0) TrimMetrics(metricsPath, StartStep);
        using var metrics = new StreamWriter(metricsPath, append: StartStep > 0);
        double recentLoss = double.NaN;
        for (int step = StartStep; step < config.Steps; step++)
        {
            cancel.ThrowIfCancellationRequested();
            var sw = Stopwatch.StartNew();
            optimizer.ZeroGrad();
            double lossSum = 0;
            int scored = 0;
            for (int micro = 0; micro < config.GradAccum; micro++)
            {
                data.GetBatch(Split.Train, (long)step * config.GradAccum + micro, B, T, inputs, targets);
                (model as IStochasticForward)?.SetForwardMode(true, config.Seed, (long)step * config.GradAccum + micro);
                var (sum, count) = model.Forward(inputs, targets, B, T);
                // Mean over each micro-batch's scored tokens, averaged over micro-batches.
                if (count > 0) model.Backward(1.0 / (count * config.GradAccum));
                lossSum += count > 0 ? sum / count : 0;
                scored += count;
            }
            double loss = lossSum / config.GradAccum;
            if (!double.IsFinite(loss))
                throw Diverged($"loss is {loss} at step {step + 1}");
            double lr = config.LearningRateAt(step);
            double norm = optimizer.Update(lr, loss);
            if (!double.IsFinite(norm))
                throw Diverged($"gradient norm is {norm} at step {step + 1}");
            sw.Stop();
            var report = new StepReport(step + 1, loss, lr, norm, sw.Elapsed.TotalMilliseconds,
                config.GradAccum * B * T / sw.Elapsed.TotalSeconds);
            History.Add(report);
            recentLoss = loss;
            var line = new JsonObject
            {
                ["step"] = report.Step, ["loss"] = loss, ["lr"] = lr, ["grad_norm"] = norm,
                ["ms"] = Math.Round(report.Milliseconds, 3), ["tokens_per_s"] = Math.Round(report.TokensPerSecond, 1),
            };
            StepMetrics?.Invoke(report.Step, line);
            metrics.WriteLine(Json(line));
            Stepped?.Invoke(report);

            bool last = step + 1 == config.Steps;
            if ((step + 1) % config.EvalEvery == 0 || last)
            {
                var (vl, va) = Evaluate(model, data, config.EvalBatches, B, T);
                var ev = new EvalReport(step + 1, vl, va, recentLoss);
                Evals.Add(ev);
                // Only finite weights with a finite val loss become a checkpoint: the last good one is never replaced by a diverged one.
                if (!double.IsFinite(vl) && !double.IsNaN(va))   // (NaN, NaN) means no scored val tokens
                    throw Diverged($"val loss is {vl} after step {step + 1}");
                if (FirstNonFinite() is string bad)
                    throw Diverged($"parameter '{bad}' is not finite after step {step + 1}");
                metrics.WriteLine(Json(new JsonObject { ["step"] = ev.Step, ["val_loss"] = vl, ["val_accuracy"] = va }));
                metrics.Flush();
                SaveCheckpoint(step + 1);
                Evaluated?.Invoke(ev);
            }
        }
    }

    static string Json(JsonObject o) => o.ToJsonString();

    /// <summary>The metrics file of a run folder: one JSON object per line.</summary>
    public const string MetricsFile = "metrics.jsonl";

    InputException Diverged(string what)
    {
        string? ck = FindCheckpoint(outDir);
        string kept = ck is null
            ? "no checkpoint had been written yet"
            : $"the last good checkpoint, {ck} (step {CheckpointStep(ck)?.ToString(CultureInfo.InvariantCulture) ?? "?"}), is kept";
        return new InputException($"training diverged: {what}; {kept} (try a lower --lr, or --clip)");
    }

    /// <summary>The name of the first parameter holding a NaN or an infinity, or null.</summary>
    string? FirstNonFinite()
    {
        foreach (var p in model.Parameters)
            foreach (var x in p.Value.HostView)   // read-only: a device-resident weight stays current on the device
                if (!F.IsFinite(x)) return p.Name;
        return null;
    }

    /// <summary>
    /// On resume, keeps only the complete lines of metrics.jsonl up to the checkpoint's step: the lines a killed run wrote
    /// after its last checkpoint are replayed by the resumed run, and a line cut off by the kill is dropped.
    /// </summary>
    static void TrimMetrics(string path, int lastStep)
    {
        if (!File.Exists(path)) return;
        var kept = new StringBuilder();
        foreach (var line in File.ReadLines(path))
        {
            try
            {
                if (JsonNode.Parse(line) is JsonObject o && o["step"] is JsonValue v && v.TryGetValue(out int step) && step <= lastStep)
                    kept.Append(line).Append('\n');
            }
            catch (JsonException) { }   // a line cut off by a kill
        }
        AtomicFile.Write(path, s => s.Write(Encoding.UTF8.GetBytes(kept.ToString())));
    }

    /// <summary>Mean loss and next-token accuracy over the scored positions of the first <paramref name="batches"/> val batches.</summary>
    public static (double Loss, double Accuracy) Evaluate(ILanguageModel<F> model, IDataSource data, int batches, int B, int T)
    {
        var inputs = new int[B * T];
        var targets = new int[B * T];
        double lossSum = 0;
        long count = 0, correct = 0;
        int V = model.VocabSize;
        for (int i = 0; i < batches; i++)
        {
            data.GetBatch(Split.Val, i, B, T, inputs, targets);
            (model as IStochasticForward)?.SetForwardMode(false, 0, 0);   // evaluation: the biases' means
            var (sum, n) = model.Forward(inputs, targets, B, T);
            lossSum += sum; count += n;
            var logits = model.Logits.Data;
            for (int r = 0; r < B * T; r++)
            {
                if (targets[r] == -100) continue;
                int arg = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<F>(logits.AsSpan(r * V, V));
                if (arg == targets[r]) correct++;
            }
        }
        return count == 0 ? (double.NaN, double.NaN) : (lossSum / count, (double)correct / count);
    }

    // ---------------- checkpoints ----------------

    /// <summary>
    /// Writes outDir/checkpoint/ (config.json, model.safetensors in the compute precision, trainer_state.safetensors)
    /// into a fresh temporary directory first, then swaps it in by renames: a run killed at any moment leaves either
    /// the previous or the new checkpoint complete (checkpoint.old is used if the swap itself was interrupted).
    /// </summary>
    public void SaveCheckpoint(int stepsDone)
    {
        string final = Path.Combine(outDir, CheckpointDir), tmp = final + ".tmp", old = final + ".old";
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        var dtype = typeof(F) == typeof(double) ? StDType.F64 : StDType.F32;
        ModelFiles.Save(model, tmp, dtype);
        SlowCheckpointForTests();
        var tensors = new List<StTensor>();
        for (int i = 0; i < optimizer.M.Length; i++)
        {
            var p = model.Parameters[i];
            tensors.Add(ModelFiles.ToStored<F>("m/" + p.Name, optimizer.M[i].HostView, optimizer.M[i].Shape, dtype));
            if (optimizer.V.Length > 0) tensors.Add(ModelFiles.ToStored<F>("v/" + p.Name, optimizer.V[i].HostView, optimizer.V[i].Shape, dtype));
        }
        var meta = new Dictionary<string, string>
        {
            ["step"] = stepsDone.ToString(CultureInfo.InvariantCulture),
            ["optimizer_step"] = optimizer.Step.ToString(CultureInfo.InvariantCulture),
            ["data"] = data.Spec,
            ["train_config"] = JsonSerializer.Serialize(config),
        };
        foreach (var (k, v) in optimizer.ExtraState()) meta[k] = v;
        SafeTensors.Write(Path.Combine(tmp, StateFile), tensors, meta);
        SlowCheckpointForTests();
        // Which data (and so which tokenizer) the model was trained on, for `mt generate`.
        File.WriteAllText(Path.Combine(tmp, DataFile), new JsonObject { ["data"] = data.Spec, ["seed"] = config.Seed }.ToJsonString() + "\n");
        SlowCheckpointForTests();
        if (Directory.Exists(final))
        {
            if (Directory.Exists(old)) Directory.Delete(old, true);
            Directory.Move(final, old);
            SlowCheckpointForTests();   // the window in which only checkpoint.old is complete
        }
        Directory.Move(tmp, final);
        if (Directory.Exists(old)) Directory.Delete(old, true);
    }

    /// <summary>
    /// A hidden hook for the kill tests: with <c>MT_TEST_SLOW_CHECKPOINT_MS</c> set, the checkpoint writer sleeps that long
    /// between its files and renames, so a test can kill the process in the middle of a checkpoint write.
    /// </summary>
    static void SlowCheckpointForTests()
    {
        if (int.TryParse(Environment.GetEnvironmentVariable("MT_TEST_SLOW_CHECKPOINT_MS"), NumberStyles.None, CultureInfo.InvariantCulture, out int ms) && ms > 0)
            Thread.Sleep(ms);
    }

    /// <summary>The step a checkpoint directory was written at, or null if its state file cannot tell.</summary>
    static int? CheckpointStep(string checkpointDir)
    {
        try
        {
            var meta = SafeTensors.Read(Path.Combine(checkpointDir, StateFile)).Metadata;
            return meta.TryGetValue("step", out var s) && int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : null;
        }
        catch (InputException) { return null; }
    }

    /// <summary>The newest complete checkpoint directory under a run folder, or null.</summary>
    public static string? FindCheckpoint(string runDir)
    {
        foreach (var name in new[] { CheckpointDir, CheckpointDir + ".old" })
        {
            string d = Path.Combine(runDir, name);
            if (File.Exists(Path.Combine(d, StateFile)) && File.Exists(Path.Combine(d, ModelFiles.WeightsFile))) return d;
        }
        return null;
    }

    /// <summary>Restores optimizer state and the step counter from a checkpoint (the model is loaded by the caller).</summary>
    public void Resume(string checkpointDir)
    {
        var state = SafeTensors.Read(Path.Combine(checkpointDir, StateFile));
        int Meta(string key)
        {
            if (!state.Metadata.TryGetValue(key, out var s))
                throw new InputException($"{state.Path}: metadata has no '{key}'; not a trainer state written by mt train");
            if (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v))
                throw new InputException($"{state.Path}: metadata '{key}' is '{s}', expected a non-negative integer");
            return v;
        }
        int startStep = Meta("step");
        int optimizerStep = Meta("optimizer_step");
        CheckSameRun(state);
        StartStep = startStep;
        optimizer.Step = optimizerStep;
        optimizer.RestoreExtraState(state.Metadata, state.Path);
        for (int i = 0; i < optimizer.M.Length; i++)
        {
            var p = model.Parameters[i];
            ModelFiles.CopyInto(new Parameter<F>(p.Name, optimizer.M[i]), state["m/" + p.Name], state.Path);
            if (optimizer.V.Length > 0) ModelFiles.CopyInto(new Parameter<F>(p.Name, optimizer.V[i]), state["v/" + p.Name], state.Path);
        }
        if (StartStep > config.Steps)
            throw new InputException($"{checkpointDir}: checkpoint is at step {StartStep}, beyond --steps {config.Steps}");
    }

    /// <summary>
    /// A resumed run replays the original bit for bit only with the same data stream and optimizer: the checkpoint's data
    /// spec, seed, batch, sequence length, accumulation and optimizer must match this run's (the schedule may change).
    /// </summary>
    void CheckSameRun(SafeTensorFile state)
    {
        if (state.Metadata.TryGetValue("data", out var spec) && spec != data.Spec)
            throw new InputException($"--resume: the checkpoint {state.Path} was trained on --data {spec}, this run asks for --data {data.Spec}; resume with the original flags");
        if (!state.Metadata.TryGetValue("train_config", out var json)) return;
        JsonObject? saved;
        try { saved = JsonNode.Parse(json) as JsonObject; }
        catch (JsonException) { throw new InputException($"{state.Path}: metadata 'train_config' is not valid JSON"); }
        if (saved is null) throw new InputException($"{state.Path}: metadata 'train_config' is not a JSON object");
        var now = JsonNode.Parse(JsonSerializer.Serialize(config))!.AsObject();
        foreach (var (key, flag) in new[] { ("Seed", "--seed"), ("Batch", "--batch"), ("Seq", "--seq"), ("GradAccum", "--grad-accum") })
        {
            string? was = saved[key]?.ToJsonString(), want = now[key]?.ToJsonString();
            if (was is not null && was != want)
                throw new InputException($"--resume: the checkpoint {state.Path} was trained with {flag} {was}, this run asks for {flag} {want}; resume with the original flags");
        }
        string? kindWas = saved["Opt"]?["Kind"]?.ToJsonString(), kindNow = now["Opt"]?["Kind"]?.ToJsonString();
        if (kindWas is not null && kindWas != kindNow)
            throw new InputException($"--resume: the checkpoint {state.Path} was trained with a different --optimizer; resume with the original flags");
    }
}
