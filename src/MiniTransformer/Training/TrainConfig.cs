namespace MiniTransformer.Training;

/// <summary>One training run's settings. Everything that affects the numbers is here (and in the manifest).</summary>
public sealed record TrainConfig(
    int Steps, int Batch, int Seq,
    double LearningRate = 1e-3,
    int? WarmupSteps = null,
    double MinLrFraction = 0.1,
    int GradAccum = 1,
    int EvalEvery = 50,
    int EvalBatches = 4,
    int Seed = 1337,
    OptimizerConfig? Optimizer = null)
{
    public OptimizerConfig Opt => Optimizer ?? new OptimizerConfig();
    public int Warmup => WarmupSteps ?? Math.Min(100, Steps / 10);

    /// <summary>Linear warm-up to the peak rate, then cosine decay to MinLrFraction·peak at the last step.</summary>
    public double LearningRateAt(int step)
    {
        if (step < Warmup) return LearningRate * (step + 1) / Warmup;
        if (Steps <= Warmup + 1) return LearningRate;
        double progress = (double)(step - Warmup) / (Steps - 1 - Warmup);
        double min = LearningRate * MinLrFraction;
        return min + 0.5 * (LearningRate - min) * (1 + Math.Cos(Math.PI * Math.Clamp(progress, 0, 1)));
    }

    /// <summary>The schedule in words for banners: "constant" (ECD: no warm-up, no decay), else warm-up + cosine.</summary>
    public string ScheduleDescription =>
        Warmup == 0 && MinLrFraction == 1.0 ? "constant"
        : MinLrFraction == 1.0 ? $"warm-up {Warmup}, then constant"
        : $"warm-up {Warmup}, cosine to {MinLrFraction.ToString(System.Globalization.CultureInfo.InvariantCulture)}×";

    public void Validate()
    {
        void Need(bool ok, string flag, string what) { if (!ok) throw new InputException($"{flag}: {what}"); }
        Need(Steps > 0, "--steps", $"must be positive (got {Steps})");
        Need(Batch > 0, "--batch", $"must be positive (got {Batch})");
        Need(Seq > 0, "--seq", $"must be positive (got {Seq})");
        Need(LearningRate > 0 && double.IsFinite(LearningRate), "--lr", $"must be a positive number (got {LearningRate})");
        Need(GradAccum > 0, "--grad-accum", $"must be positive (got {GradAccum})");
        Need(EvalEvery > 0, "--eval-every", $"must be positive (got {EvalEvery})");
    }
}
