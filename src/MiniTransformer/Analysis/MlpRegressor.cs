using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;
using MiniTransformer.Training;

namespace MiniTransformer.Analysis;

/// <summary>Training settings of <see cref="MlpRegressor"/> (full-batch AdamW).</summary>
public sealed record MlpTrainConfig(int Hidden = 128, int Steps = 300, double LearningRate = 5e-4, double WeightDecay = 0.01,
    int EvalEvery = 5, int Seed = 1);

/// <summary>
/// A one-hidden-layer regressor y ≈ μ_y + s_y · (W₂ · gelu(W₁ z + b₁) + b₂), z = (x − μ_x) / σ_x per feature, s_y the
/// RMS of the centred targets, trained in float32 with THIS engine's kernels: the backend's matmul and gelu (erf form)
/// forward and backward passes, and its <see cref="Optimizer{F}"/> (AdamW). Loss: the mean squared error in the
/// standardised target units. W₁ ~ N(0, 1/d_in), W₂ = b₁ = b₂ = 0, so the untrained net predicts the training mean
/// μ_y exactly. With validation data, the parameters of the step with the lowest validation loss are kept (early
/// stopping, checked every EvalEvery steps).
/// </summary>
public sealed class MlpRegressor
{
    readonly IBackend<float> ops = CpuBackend<float>.Instance;
    readonly Parameter<float> w1, b1, w2, b2;
    double[] muX = [], sigmaX = [], muY = [];
    double sY = 1;

    public int In { get; }
    public int Hidden { get; }
    public int Out { get; }
    public IReadOnlyList<Parameter<float>> Parameters => [w1, b1, w2, b2];
    /// <summary>The step whose parameters were kept, and the training/validation losses (standardised units) there.</summary>
    public int BestStep { get; private set; }
    public double TrainLoss { get; private set; } = double.NaN;
    public double ValLoss { get; private set; } = double.NaN;

    public MlpRegressor(int dIn, int hidden, int dOut, int seed)
    {
        In = dIn; Hidden = hidden; Out = dOut;
        var rng = new Random(seed);
        var w = new float[hidden * dIn];
        double std = 1 / Math.Sqrt(dIn);
        for (int i = 0; i < w.Length; i++)
        {
            // Box–Muller normal deviate.
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            w[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        w1 = new("fc.weight", new Tensor<float>(w, hidden, dIn));          // [H, d_in] (Linear, OutIn)
        b1 = new("fc.bias", new Tensor<float>(hidden));
        w2 = new("proj.weight", new Tensor<float>(dOut, hidden));          // [d_out, H]
        b2 = new("proj.bias", new Tensor<float>(dOut));
    }

    sealed class Buffers(int n, int dIn, int h, int dOut)
    {
        public readonly int N = n;
        public readonly Tensor<float> Z = new(n, dIn), Pre = new(n, h), Act = new(n, h), Y = new(n, dOut),
            DY = new(n, dOut), DAct = new(n, h), DPre = new(n, h);
    }

    Buffers Standardize(IReadOnlyList<double[]> x)
    {
        var buf = new Buffers(x.Count, In, Hidden, Out);
        for (int i = 0; i < x.Count; i++)
            for (int j = 0; j < In; j++) buf.Z.Data[i * In + j] = (float)((x[i][j] - muX[j]) / sigmaX[j]);
        return buf;
    }

    float[] Targets(IReadOnlyList<double[]> y)
    {
        var t = new float[y.Count * Out];
        for (int i = 0; i < y.Count; i++)
            for (int j = 0; j < Out; j++) t[i * Out + j] = (float)((y[i][j] - muY[j]) / sY);
        return t;
    }

    void Forward(Buffers b)
    {
        ops.MatmulForward(b.Pre, b.Z, w1.Value, b1.Value, b.N, In, Hidden, WeightLayout.OutIn);
        ops.GeluForward(b.Act, b.Pre, b.N * Hidden, GeluForm.Erf);
        ops.MatmulForward(b.Y, b.Act, w2.Value, b2.Value, b.N, Hidden, Out, WeightLayout.OutIn);
    }

    static double Mse(Buffers b, float[] t)
    {
        double s = 0;
        for (int i = 0; i < t.Length; i++) { double e = b.Y.Data[i] - t[i]; s += e * e; }
        return s / t.Length;
    }

    /// <summary>Fits the standardisation on (x, y), then trains; returns the final (kept) training loss.</summary>
    public double Train(IReadOnlyList<double[]> x, IReadOnlyList<double[]> y, MlpTrainConfig cfg,
        IReadOnlyList<double[]>? xVal = null, IReadOnlyList<double[]>? yVal = null)
    {
        int n = x.Count;
        if (n == 0 || y.Count != n) throw new ArgumentException($"need as many targets as inputs (got {n} and {y.Count})");
        muX = new double[In]; sigmaX = new double[In]; muY = new double[Out];
        for (int j = 0; j < In; j++)
        {
            double m = 0, v = 0;
            for (int i = 0; i < n; i++) m += x[i][j];
            m /= n;
            for (int i = 0; i < n; i++) v += (x[i][j] - m) * (x[i][j] - m);
            muX[j] = m; sigmaX[j] = Math.Max(Math.Sqrt(v / n), 1e-8);
        }
        double ss = 0;
        for (int j = 0; j < Out; j++)
        {
            double m = 0;
            for (int i = 0; i < n; i++) m += y[i][j];
            muY[j] = m / n;
            for (int i = 0; i < n; i++) ss += (y[i][j] - muY[j]) * (y[i][j] - muY[j]);
        }
        sY = Math.Max(Math.Sqrt(ss / (n * Out)), 1e-12);

        var tr = Standardize(x);
        var tTr = Targets(y);
        Buffers? va = xVal is null ? null : Standardize(xVal);
        float[]? tVa = yVal is null ? null : Targets(yVal);
        var opt = new Optimizer<float>(Parameters, new OptimizerConfig(OptimizerKind.AdamW, Beta1: 0.9, Beta2: 0.999,
            WeightDecay: cfg.WeightDecay, GradClip: 0), ops);
        float[][]? best = null;
        double bestVal = double.PositiveInfinity;
        opt.ZeroGrad();
        for (int step = 1; step <= cfg.Steps; step++)
        {
            Forward(tr);
            // L = (1/(N·d_out)) Σ (ŷ − t)²  ⇒  ∂L/∂ŷ = 2(ŷ − t)/(N·d_out).
            float scale = 2f / tTr.Length;
            for (int i = 0; i < tTr.Length; i++) tr.DY.Data[i] = scale * (tr.Y.Data[i] - tTr[i]);
            tr.DAct.Clear(); tr.DPre.Clear();   // backward passes accumulate
            ops.MatmulBackward(tr.DAct, w2.Grad, b2.Grad, tr.DY, tr.Act, w2.Value, n, Hidden, Out, WeightLayout.OutIn);
            ops.GeluBackward(tr.DPre, tr.DAct, tr.Pre, n * Hidden, GeluForm.Erf);
            ops.MatmulBackward(null, w1.Grad, b1.Grad, tr.DPre, tr.Z, w1.Value, n, In, Hidden, WeightLayout.OutIn);
            opt.Update(cfg.LearningRate);   // also zeroes the gradients
            if (va is not null && tVa is not null && (step % cfg.EvalEvery == 0 || step == cfg.Steps))
            {
                Forward(va);
                double l = Mse(va, tVa);
                if (l < bestVal) { bestVal = l; BestStep = step; best = [.. Parameters.Select(p => (float[])p.Value.Data.Clone())]; }
            }
        }
        if (best is not null)
            for (int i = 0; i < best.Length; i++) best[i].CopyTo(Parameters[i].Value.Data, 0);
        else BestStep = cfg.Steps;
        ValLoss = bestVal;
        Forward(tr);
        TrainLoss = Mse(tr, tTr);
        return TrainLoss;
    }

    public double[][] Predict(IReadOnlyList<double[]> x)
    {
        if (muX.Length == 0) throw new InvalidOperationException("train the regressor first");
        var b = Standardize(x);
        Forward(b);
        var r = new double[x.Count][];
        for (int i = 0; i < x.Count; i++)
        {
            r[i] = new double[Out];
            for (int j = 0; j < Out; j++) r[i][j] = muY[j] + sY * b.Y.Data[i * Out + j];
        }
        return r;
    }
}
