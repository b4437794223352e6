using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
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
    public double GradNorm()
    {
        double s = 0;
        foreach (var p in parameters) s += ops.SumOfSquares(p.Grad);
        return Math.Sqrt(s);
    }

    // True right after Update, which zeroes every gradient in the same sweep as the update (one pass over the
    // parameters instead of two). ZeroGrad then only has to confirm the gradients are still zero (a read, which exits
    // at the first non-zero element) instead of writing them all again.
    bool gradsZeroed;

    /// <summary>Zeroes every gradient (backward accumulates).</summary>
    public void ZeroGrad()
    {
        if (gradsZeroed && ops is CpuBackend<F> && parameters.All(p => CpuBackend<F>.IsZero(p.Grad)))
        {
            gradsZeroed = false;
            return;
        }
        foreach (var p in parameters) ops.Zero(p.Grad);
        gradsZeroed = false;
    }

    /// <summary>
    /// Clips by global norm (when GradClip &gt; 0) and updates; returns the norm before clipping. Two sweeps: the norm
    /// (read the gradients), then the update fused with zeroing the gradients (so the next <see cref="ZeroGrad"/> is
    /// nearly free). The gradients are therefore zero after this call.
    /// </summary>
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
                ops.AdamWZeroGrad(p.Value, p.Grad, M[i], V[i], new AdamWStep(learningRate, Config.Beta1, Config.Beta2, Config.Epsilon, wd, Step, scale), zeroGrad: true);
            else
                ops.SgdZeroGrad(p.Value, p.Grad, learningRate, wd, scale, zeroGrad: true);
        }
        gradsZeroed = true;
        return norm;
    }
}
