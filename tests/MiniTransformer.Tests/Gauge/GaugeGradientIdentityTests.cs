using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Tests.Gauge;

/// <summary>Gradient identities that follow from the symmetries, and the conserved quantities of gradient flow.</summary>
public class GaugeGradientIdentityTests
{
    static (Gpt2<double> Model, GaugeArch Arch, ParamSet Grads, ParamSet Values, double Scale) Gradients(bool tied, int seed = 5)
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(d: 6, H: 3, F: 7, V: 11, T: 5, L: 2, tied: tied), seed);
        var rng = new Random(seed);
        int B = 3, T = 5;
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        var targets = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        targets[4] = -100;
        var (_, count) = model.Forward(ids, targets, B, T);
        foreach (var p in model.Parameters) p.Grad.Clear();
        model.Backward(1.0 / count);
        var grads = new ParamSet([.. model.Parameters.Select(p => p.Name)], [.. model.Parameters.Select(p => p.Value.Shape.ToArray())],
            [.. model.Parameters.Select(p => p.Grad.Data.ToArray())]);
        double scale = grads.Data.Max(d => d.Max(Math.Abs));
        return (model, GaugeArch.ForGpt2(model.Config), grads, ParamSet.From(model.Parameters), scale);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void KeyBiasGradientVanishes(bool tied)
    {
        var (_, a, g, _, scale) = Gradients(tied);
        foreach (var s in a.Attention)
            for (int j = 0; j < s.K.Cols; j++)
                Assert.True(Math.Abs(s.K.GetBias(g, j)) < 1e-14 * scale, $"layer {s.Layer}: grad b_K[{j}] = {s.K.GetBias(g, j):E2}");
        // ... while the query and value biases do get gradient.
        Assert.True(a.Attention.Max(s => s.Q.BiasVector(g).Max(Math.Abs)) > 1e-6 * scale);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OutputBiasGradientsSumToZero(bool tied)
    {
        var (_, a, g, _, scale) = Gradients(tied);
        foreach (var w in a.ResidualWriters)
        {
            var b = w.BiasVector(g);
            Assert.True(Math.Abs(b.Sum()) < 1e-14 * scale, $"{w.Bias}: grad·1 = {b.Sum():E2}");
            Assert.True(b.Max(Math.Abs) > 1e-6 * scale);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LayerNormIdentity(bool tied)
    {
        // For each LayerNorm feeding linear maps only and each coordinate k: g_k·∂g_k + b_k·∂b_k = W_k,:·∂W_k,:
        var (_, a, g, p, scale) = Gradients(tied);
        Assert.Equal(tied ? 4 : 5, a.FoldableLns.Length);
        foreach (var ln in a.FoldableLns)
            for (int k = 0; k < a.D; k++)
            {
                double lhs = p[ln.Gain][k] * g[ln.Gain][k] + p[ln.Bias][k] * g[ln.Bias][k];
                double rhs = ln.Readers.Sum(r => Enumerable.Range(0, r.Cols).Sum(j => r.Get(p, k, j) * r.Get(g, k, j)));
                Assert.True(Math.Abs(lhs - rhs) < 1e-13 * scale, $"{ln.Name}[{k}]: {lhs} vs {rhs}");
                Assert.True(Math.Abs(lhs) > 1e-8 * scale);
            }
    }

    static double DriftAfter(OptimizerKind kind, double lr, int steps)
    {
        var model = GaugeTestModels.Generic(GaugeTestModels.Config(d: 6, H: 3, F: 7, V: 11, T: 5, L: 2, tied: true), 9);
        var a = GaugeArch.ForGpt2(model.Config);
        var c0 = Conserved.Compute(a, ParamSet.From(model.Parameters));
        var opt = new Optimizer<double>(model.Parameters, new OptimizerConfig(kind, WeightDecay: 0, GradClip: 0), CpuBackend<double>.Instance);
        var rng = new Random(2);
        int B = 4, T = 5;
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        var targets = Enumerable.Range(0, B * T).Select(_ => rng.Next(11)).ToArray();
        for (int s = 0; s < steps; s++)
        {
            opt.ZeroGrad();
            var (_, count) = model.Forward(ids, targets, B, T);
            model.Backward(1.0 / count);
            opt.Update(lr);
        }
        return Conserved.Drift(c0, Conserved.Compute(a, ParamSet.From(model.Parameters)));
    }

    [Fact]
    public void ConservedQuantitiesDriftVanishesWithTheSgdStep()
    {
        // Same total time lr·steps = 0.4: the drift of SGD is O(lr), so a 4× smaller step gives ~4× less drift.
        double d1 = DriftAfter(OptimizerKind.Sgd, 0.04, 10);
        double d2 = DriftAfter(OptimizerKind.Sgd, 0.01, 40);
        double d3 = DriftAfter(OptimizerKind.Sgd, 0.0025, 160);
        Assert.True(d2 < d1 / 3 && d3 < d2 / 3, $"SGD drift {d1:E2}, {d2:E2}, {d3:E2}");
        // AdamW (no decay) at the same step does not conserve them.
        double adam = DriftAfter(OptimizerKind.AdamW, 0.01, 40);
        Assert.True(adam > 10 * d2, $"AdamW drift {adam:E2} vs SGD {d2:E2}");
    }
}
