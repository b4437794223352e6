using System.Diagnostics;
using System.Globalization;
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
        this.model = model; this.data = data; this.config = config; this.ops = ops; this.outDir = outDir;
        optimizer = new Optimizer<F>(model.Parameters, config.Opt, ops);
    }

    /// <summary>First step to run (non-zero after <see cref="Resume"/>).</summary>
    public int StartStep { get; private set; }
    public List<StepReport> History { get; } = [];
    public List<EvalReport> Evals { get; } = [];

    public event Action<StepReport>? Stepped;
    public event Action<EvalReport>? Evaluated;

    /// <summary>Runs the remaining steps; evaluates and checkpoints every EvalEvery steps and at the end.</summary>
    public void Run(CancellationToken cancel = default)
    {
        Directory.CreateDirectory(outDir);
        int B = config.Batch, T = config.Seq;
        var inputs = new int[B * T];
        var targets = new int[B * T];
        using var metrics = new StreamWriter(Path.Combine(outDir, "metrics.jsonl"), append: StartStep > 0);
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
                var (sum, count) = model.Forward(inputs, targets, B, T);
                // Mean over each micro-batch's scored tokens, averaged over micro-batches.
                if (count > 0) model.Backward(1.0 / (count * config.GradAccum));
                lossSum += count > 0 ? sum / count : 0;
                scored += count;
            }
            double loss = lossSum / config.GradAccum;
            if (!double.IsFinite(loss))
                throw new InputException($"training diverged: loss is {loss} at step {step}; the last good checkpoint in {Path.Combine(outDir, CheckpointDir)} is kept (try a lower --lr)");
            double lr = config.LearningRateAt(step);
            double norm = optimizer.Update(lr);
            if (!double.IsFinite(norm))
                throw new InputException($"training diverged: gradient norm is {norm} at step {step}; the last good checkpoint in {Path.Combine(outDir, CheckpointDir)} is kept (try a lower --lr)");
            sw.Stop();
            var report = new StepReport(step + 1, loss, lr, norm, sw.Elapsed.TotalMilliseconds,
                config.GradAccum * B * T / sw.Elapsed.TotalSeconds);
            History.Add(report);
            recentLoss = loss;
            metrics.WriteLine(Json(new JsonObject
            {
                ["step"] = report.Step, ["loss"] = loss, ["lr"] = lr, ["grad_norm"] = norm,
                ["ms"] = Math.Round(report.Milliseconds, 3), ["tokens_per_s"] = Math.Round(report.TokensPerSecond, 1),
            }));
            Stepped?.Invoke(report);

            bool last = step + 1 == config.Steps;
            if ((step + 1) % config.EvalEvery == 0 || last)
            {
                var (vl, va) = Evaluate(model, data, config.EvalBatches, B, T);
                var ev = new EvalReport(step + 1, vl, va, recentLoss);
                Evals.Add(ev);
                metrics.WriteLine(Json(new JsonObject { ["step"] = ev.Step, ["val_loss"] = vl, ["val_accuracy"] = va }));
                metrics.Flush();
                SaveCheckpoint(step + 1);
                Evaluated?.Invoke(ev);
            }
        }
    }

    static string Json(JsonObject o) => o.ToJsonString();

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
        var tensors = new List<StTensor>();
        for (int i = 0; i < optimizer.M.Length; i++)
        {
            var p = model.Parameters[i];
            tensors.Add(ModelFiles.ToStored<F>("m/" + p.Name, optimizer.M[i].Span, p.Value.Shape, dtype));
            tensors.Add(ModelFiles.ToStored<F>("v/" + p.Name, optimizer.V[i].Span, p.Value.Shape, dtype));
        }
        var meta = new Dictionary<string, string>
        {
            ["step"] = stepsDone.ToString(CultureInfo.InvariantCulture),
            ["optimizer_step"] = optimizer.Step.ToString(CultureInfo.InvariantCulture),
            ["data"] = data.Spec,
            ["train_config"] = JsonSerializer.Serialize(config),
        };
        SafeTensors.Write(Path.Combine(tmp, StateFile), tensors, meta);
        // Which data (and so which tokenizer) the model was trained on, for `mt generate`.
        File.WriteAllText(Path.Combine(tmp, DataFile), new JsonObject { ["data"] = data.Spec, ["seed"] = config.Seed }.ToJsonString() + "\n");
        if (Directory.Exists(final))
        {
            if (Directory.Exists(old)) Directory.Delete(old, true);
            Directory.Move(final, old);
        }
        Directory.Move(tmp, final);
        if (Directory.Exists(old)) Directory.Delete(old, true);
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
        StartStep = int.Parse(state.Metadata["step"], CultureInfo.InvariantCulture);
        optimizer.Step = int.Parse(state.Metadata["optimizer_step"], CultureInfo.InvariantCulture);
        for (int i = 0; i < optimizer.M.Length; i++)
        {
            var p = model.Parameters[i];
            ModelFiles.CopyInto(new Parameter<F>(p.Name, optimizer.M[i]), state["m/" + p.Name], state.Path);
            ModelFiles.CopyInto(new Parameter<F>(p.Name, optimizer.V[i]), state["v/" + p.Name], state.Path);
        }
        if (StartStep > config.Steps)
            throw new InputException($"{checkpointDir}: checkpoint is at step {StartStep}, beyond --steps {config.Steps}");
    }
}
