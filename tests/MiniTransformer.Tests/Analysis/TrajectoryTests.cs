using MiniTransformer.Analysis;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.Analysis;

/// <summary>Layer-trajectory metrics against hand-computed float64 values, and the states they read from the models.</summary>
public class TrajectoryTests
{
    // h = (3,4) → (6,8) → (6,0) → (0,6): the first step is radial (no energy), then two turns.
    static readonly double[][] Path = [[3, 4], [6, 8], [6, 0], [0, 6]];

    [Fact]
    public void MetricsOfAHandWorkedPath()
    {
        var t = new TokenTrajectory(Path);
        Assert.Equal([5, 10, 6, 6], t.Norms);
        // Δ = (3,4), (0,−8), (−6,6).
        Assert.Equal(5, t.Steps[0], 14);
        Assert.Equal(8, t.Steps[1], 14);
        Assert.Equal(6 * Math.Sqrt(2), t.Steps[2], 14);
        Assert.Equal(1, t.RelativeSteps[0], 15);
        Assert.Equal(0.8, t.RelativeSteps[1], 15);
        Assert.Equal(Math.Sqrt(2), t.RelativeSteps[2], 14);
        // cos∠(Δ1, Δ0) = −32/(8·5) = −0.8; cos∠(Δ2, Δ1) = −48/(6√2·8) = −1/√2 → 135°.
        Assert.Equal(Math.Acos(-0.8) * 180 / Math.PI, t.Angles[0], 12);
        Assert.Equal(143.13010235415598, t.Angles[0], 10);
        Assert.Equal(135, t.Angles[1], 12);
        // x = (0.6,0.8), (0.6,0.8), (1,0), (0,1): E = ½‖x_{ℓ+1} − x_ℓ‖² = 0, ½(0.16 + 0.64) = 0.4, ½·2 = 1.
        Assert.Equal(0, t.Energies[0], 15);
        Assert.Equal(0.4, t.Energies[1], 15);
        Assert.Equal(1, t.Energies[2], 15);
        double m = 1.4 / 3;
        Assert.Equal(Math.Sqrt((m * m + (0.4 - m) * (0.4 - m) + (1 - m) * (1 - m)) / 3) / m, t.EnergyCv, 14);
        Assert.Equal(0.88063057, t.EnergyCv, 7);
        Assert.Equal(double.PositiveInfinity, t.EnergyMaxOverMin);   // a zero-energy (radial) step
    }

    [Fact]
    public void AnEvenlyPacedTurnHasNoSpread()
    {
        // Quarter turns with growing norms: E = 1 per layer whatever the norms.
        var t = new TokenTrajectory([[1, 0, 0], [0, 2, 0], [-3, 0, 0], [0, -4, 0]]);
        Assert.All(t.Energies, e => Assert.Equal(1, e, 15));
        Assert.Equal(0, t.EnergyCv, 15);
        Assert.Equal(1, t.EnergyMaxOverMin, 15);
        // Δ0 = (−1,2,0), Δ1 = (−3,−2,0): cos = (3 − 4)/(√5·√13).
        Assert.Equal(Math.Acos(-1 / Math.Sqrt(65)) * 180 / Math.PI, t.Angles[0], 12);
    }

    [Fact]
    public void SummaryIsMeanAndPopulationStdOverTokens()
    {
        var a = new TokenTrajectory(Path);
        var b = new TokenTrajectory([[1, 0], [0, 2], [-3, 0], [0, -4]]);
        var s = TrajectorySummary.Of([a, b]);
        Assert.Equal((3, 2), (s.Layers, s.Tokens));
        Assert.Equal(new MeanStd(3, 2, 2), s.Norms[0]);               // ‖h_0‖: 5 and 1
        Assert.Equal(new MeanStd(5, 1, 2), s.Norms[3]);               // ‖h_3‖: 6 and 4
        Assert.Equal(0.5, s.Energies[0].Mean, 15);                    // E_0: 0 and 1
        Assert.Equal(0.5, s.Energies[0].Std, 15);
        Assert.Equal(2, s.Angles.Length);
        Assert.Equal((a.EnergyCv + 0) / 2, s.EnergyCv.Mean, 15);
        // max/min is ∞ for the first token: left out of its mean, counted by Count.
        Assert.Equal(1, s.EnergyMaxOverMin.Count);
        Assert.Equal(1, s.EnergyMaxOverMin.Mean, 15);
        Assert.Equal(new MeanStd(double.NaN, double.NaN, 0), MeanStd.Of([double.NaN]));
    }

    [Fact]
    public void AZeroStepHasNoAngle()
    {
        var t = new TokenTrajectory([[1, 0], [1, 0], [0, 1]]);
        Assert.Equal(0, t.Steps[0]);
        Assert.True(double.IsNaN(t.Angles[0]));
    }

    [Fact]
    public void StatesAreTheDocumentedActivations()
    {
        var gpt = new Gpt2<double>(new Gpt2Config(11, 8, 8, 2, 2, 1e-5, 16, true), CpuBackend<double>.Instance);
        gpt.InitializeRandom(3);
        int[] ids = [1, 5, 2, 9, 3];
        var g = Trajectory.Run(gpt, ids);
        Assert.Equal(5, g.Count);
        var acts = gpt.Activations().ToDictionary(x => x.Name, x => x.Data);
        Assert.Equal(Norm(acts["embed"], 2, 8), g[2].Norms[0], 12);
        Assert.Equal(Norm(acts["h.1.resid_post"], 4, 8), g[4].Norms[2], 12);

        var bert = new Bert<double>(new BertConfig(11, 8, 8, 2, 2, 16, 2, 1e-12), CpuBackend<double>.Instance);
        bert.InitializeRandom(3);
        var b = Trajectory.Run(bert, ids, from: 1);
        Assert.Equal(4, b.Count);
        var bacts = bert.Activations().ToDictionary(x => x.Name, x => x.Data);
        Assert.Equal(Norm(bacts["embed.ln"], 1, 8), b[0].Norms[0], 12);
        Assert.Equal(Norm(bacts["layer.0.out"], 3, 8), b[2].Norms[1], 12);
        Assert.Equal(Norm(bacts["layer.1.out"], 4, 8), b[3].Norms[2], 12);
        Assert.Throws<InputException>(() => Trajectory.Run(bert, new int[9]));
    }

    static double Norm(double[] data, int t, int d) => Math.Sqrt(data.AsSpan(t * d, d).ToArray().Sum(x => x * x));
}
