using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;
using MiniTransformer.Training;
using Xunit;

namespace MiniTransformer.Tests.SymmetryBreaking;

public class EcdTests
{
    // A small problem: F(θ) = ½ Σ c_i (θ_i − t_i)² + 3 over two tensors (so F − F₀ > 0 with F₀ = 2).
    static readonly double[] Cq = [1.0, 2.0, 0.5, 3.0, 1.5], Tq = [0.3, -0.2, 1.0, 0.0, -1.0];

    static double LossAndGrad(double[] th, double[] g)
    {
        double f = 3;
        for (int i = 0; i < th.Length; i++) { double d = th[i] - Tq[i]; f += 0.5 * Cq[i] * d * d; g[i] = Cq[i] * d; }
        return f;
    }

    /// <summary>A float64 transcription of ECD_q1_scaled's step, written from the update rule, flat over tensors [0..2) and [2..5).</summary>
    static void Reference(double[] th, int steps, double lr, double eta, double F0, List<double> losses)
    {
        int[][] groups = [[0, 1], [2, 3, 4]];
        int D = th.Length;
        var p = new double[D]; var g = new double[D];
        double p2 = 1; bool init = false;
        double dt = lr / Math.Sqrt(eta);
        for (int s = 0; s < steps; s++)
        {
            double F = LossAndGrad(th, g);
            losses.Add(F);
            if (!init)
            {
                double n2 = 0;
                for (int i = 0; i < D; i++) { p[i] = -g[i]; n2 += p[i] * p[i]; }
                for (int i = 0; i < D; i++) p[i] *= Math.Sqrt(1 / n2);
                p2 = 1; init = true;
            }
            if (!(F - F0 > 1e-40)) continue;
            double c = Math.Abs(1 - p2) < 1e-10 ? 1 : Math.Sqrt(1 / p2);
            double pre = -0.5 * dt * eta * D / (D - 1);
            double np2 = 0;
            foreach (var grp in groups)
            {
                foreach (int i in grp) p[i] *= c;
                double dot = grp.Sum(i => p[i] * g[i]);
                foreach (int i in grp) { p[i] += pre / (F - F0) * (g[i] - p[i] * dot); np2 += p[i] * p[i]; }
            }
            double pn = Math.Sqrt(np2), q2 = 0;
            for (int i = 0; i < D; i++) { th[i] += dt * p[i]; p[i] /= pn; q2 += p[i] * p[i]; }
            for (int i = 0; i < D; i++) p[i] = pn * p[i] / Math.Sqrt(q2);
            p2 = pn * pn;
        }
    }

    [Fact]
    public void Ecd_matches_a_float64_transcription()
    {
        double[] th0 = [1.0, 0.5, -0.5, 0.8, 0.2];
        var a = new Parameter<double>("a", new Tensor<double>(2)); var b = new Parameter<double>("b", new Tensor<double>(3));
        th0.AsSpan(0, 2).CopyTo(a.Value.Span); th0.AsSpan(2).CopyTo(b.Value.Span);
        var opt = new Optimizer<double>([a, b], new OptimizerConfig(OptimizerKind.Ecd, WeightDecay: 0, EcdEta: 4, EcdF0: 2.0), CpuBackend<double>.Instance);
        var g = new double[5]; var th = new double[5];
        var ours = new List<double>();
        for (int s = 0; s < 40; s++)
        {
            a.Value.Span.CopyTo(th); b.Value.Span.CopyTo(th.AsSpan(2));
            double F = LossAndGrad(th, g);
            ours.Add(F);
            g.AsSpan(0, 2).CopyTo(a.Grad.Span); g.AsSpan(2).CopyTo(b.Grad.Span);
            opt.Update(0.1, F);
        }
        var refTh = (double[])th0.Clone(); var refLoss = new List<double>();
        Reference(refTh, 40, 0.1, 4, 2.0, refLoss);
        for (int s = 0; s < 40; s++) Assert.Equal(refLoss[s], ours[s], 1e-12);
        Assert.Equal(refTh[0], a.Value.Data[0], 1e-12);
        Assert.Equal(refTh[4], b.Value.Data[2], 1e-12);
        Assert.True(ours[^1] < ours[0] - 0.1, $"ECD should descend: {ours[0]} → {ours[^1]}");
        Assert.Equal(0, opt.Ecd!.Skipped);
        Assert.Equal(0.0, a.Grad.Data[0]);   // gradients zeroed by the update
    }

    [Fact]
    public void Ecd_skips_steps_where_the_loss_is_below_F0()
    {
        var a = new Parameter<double>("a", new Tensor<double>(3));
        a.Value.Span.Fill(1);
        var opt = new Optimizer<double>([a], new OptimizerConfig(OptimizerKind.Ecd, EcdF0: 10), CpuBackend<double>.Instance);
        a.Grad.Span.Fill(0.5);
        opt.Update(1.0, 3.0);   // F − F₀ = −7 ≤ 0
        Assert.True(opt.Ecd!.LastSkipped);
        Assert.Equal(1, opt.Ecd.Skipped);
        Assert.All(a.Value.Data, v => Assert.Equal(1.0, v));
    }

    [Fact]
    public void Sgd_nesterov_matches_pytorch_formula()
    {
        var a = new Parameter<double>("w", new Tensor<double>(1, 2));
        a.Value.Data[0] = 1; a.Value.Data[1] = -2;
        var opt = new Optimizer<double>([a], new OptimizerConfig(OptimizerKind.Sgdm, WeightDecay: 0, GradClip: 0, Momentum: 0.9), CpuBackend<double>.Instance);
        double x = 1, buf = 0;
        for (int s = 0; s < 5; s++)
        {
            double gx = 2 * a.Value.Data[0];
            a.Grad.Data[0] = gx; a.Grad.Data[1] = 0;
            opt.Update(0.1);
            double g = 2 * x; buf = 0.9 * buf + g; x -= 0.1 * (g + 0.9 * buf);
            Assert.Equal(x, a.Value.Data[0], 1e-15);
        }
    }
}
