using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Training;

public enum OptimizerKind { AdamW, Sgd }

/// <summary>Optimizer hyper-parameters. Weight decay applies to matrices and embeddings only (nanoGPT's groups).</summary>
public sealed record OptimizerConfig(
    OptimizerKind Kind = OptimizerKind.AdamW, double Beta1 = 0.9, double Beta2 = 0.95, double Epsilon = 1e-8,
    double WeightDecay = 0.1, double GradClip = 1.0);

/// <summary>AdamW (PyTorch's update) or plain SGD over a model's parameters, with global-norm gradient clipping.</summary>
public sealed class Optimizer<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    readonly IBackend<F> ops;
    readonly IReadOnlyList<Parameter<F>> parameters;

    public Optimizer(IReadOnlyList<Parameter<F>> parameters, OptimizerConfig config, IBackend<F> ops)
    {
        this.parameters = parameters; Config = config; this.ops = ops;
        if (config.Kind == OptimizerKind.AdamW)
        {
            M = [.. parameters.Select(p => new Tensor<F>(p.Value.Shape))];
            V = [.. parameters.Select(p => new Tensor<F>(p.Value.Shape))];
        }
    }

    public OptimizerConfig Config { get; }
    /// <summary>Steps taken so far (AdamW's bias correction uses Step + 1 on the next update).</summary>
    public int Step { get; set; }
    /// <summary>First and second moments, one per parameter (AdamW only).</summary>
    public Tensor<F>[] M { get; } = [];
    public Tensor<F>[] V { get; } = [];

    /// <summary>‖g‖₂ over every parameter's gradient (summed in float64 in a fixed order).</summary>
    public double GradNorm() => Math.Sqrt(parameters.Sum(p => ops.SumOfSquares(p.Grad)));

    /// <summary>Zeroes every gradient (backward accumulates).</summary>
    public void ZeroGrad() { foreach (var p in parameters) p.Grad.Clear(); }

    /// <summary>Clips by global norm (when GradClip &gt; 0) and updates; returns the norm before clipping.</summary>
    public double Update(double learningRate)
    {
        double norm = GradNorm();
        double scale = Config.GradClip > 0 && norm > Config.GradClip ? Config.GradClip / norm : 1.0;
        Step++;
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            double wd = p.Decays ? Config.WeightDecay : 0;
            if (Config.Kind == OptimizerKind.AdamW)
                ops.AdamW(p.Value, p.Grad, M[i], V[i], new AdamWStep(learningRate, Config.Beta1, Config.Beta2, Config.Epsilon, wd, Step, scale));
            else
                ops.Sgd(p.Value, p.Grad, learningRate, wd, scale);
        }
        return norm;
    }
}
