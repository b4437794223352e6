using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tensors;
using MiniTransformer.Training;
using Xunit;

namespace MiniTransformer.Tests.SymmetryBreaking;

public class SymmetryBreakingTests
{
    static Gpt2Config Cfg(bool bq = true, bool bv = true, MlpActivation act = MlpActivation.Gelu)
    {
        var c = new Gpt2Config(11, 8, 8, 2, 2, NInner: 12);
        return c with { SymmetryBreaking = bq || bv ? SymmetryBreakingConfig.Create(c.HeadDim, bq, bv) : null, MlpActivation = act };
    }

    static (int[] ids, int[] tg) Batch(int B, int T, int V, int seed)
    {
        var r = new Random(seed);
        return ([.. Enumerable.Range(0, B * T).Select(_ => r.Next(V))], [.. Enumerable.Range(0, B * T).Select(_ => r.Next(V))]);
    }

    [Fact]
    public void Defaults_match_the_paper()
    {
        var s = SymmetryBreakingConfig.Create(4, true, true);
        Assert.All(s.BqMean, x => Assert.Equal(0.5, x));
        Assert.Equal([0.05, 0.05 + 0.1 / 3, 0.05 + 0.2 / 3, 0.15], s.BqStd, (a, b) => Math.Abs(a - b) < 1e-15);
        Assert.All(s.BvMean, x => Assert.Equal(0.5, x));
        Assert.All(s.BvStd, x => Assert.Equal(0.05, x));
    }

    [Fact]
    public void Eval_uses_the_mean_and_training_resamples_deterministically()
    {
        var m = new Gpt2<double>(Cfg(), CpuBackend<double>.Instance);
        m.InitializeRandom(1);
        var (ids, tg) = Batch(2, 5, 11, 3);
        var biases = m.Layers[0].Attn.Biases!;
        m.Forward(ids, tg, 2, 5);   // default: eval
        Assert.All(biases.LastBq, x => Assert.Equal(0.5, x));
        Assert.All(biases.LastBv, x => Assert.Equal(0.5, x));

        m.SetForwardMode(true, 7, 0);
        m.Forward(ids, tg, 2, 5);
        var a0 = (double[])biases.LastBq.Clone();
        var l1 = (double[])m.Layers[1].Attn.Biases!.LastBq.Clone();
        Assert.Contains(a0, x => x != 0.5);
        Assert.NotEqual(a0, l1);                      // layers draw independent biases
        m.SetForwardMode(true, 7, 1);
        m.Forward(ids, tg, 2, 5);
        Assert.NotEqual(a0, biases.LastBq);           // resampled every training forward
        m.SetForwardMode(true, 7, 0);
        m.Forward(ids, tg, 2, 5);
        Assert.Equal(a0, biases.LastBq);              // a pure function of (seed, index, layer)
        m.SetForwardMode(false, 0, 0);
        m.Forward(ids, tg, 2, 5);
        Assert.All(biases.LastBq, x => Assert.Equal(0.5, x));
    }

    [Fact]
    public void Sampled_biases_have_the_configured_moments()
    {
        var s = SymmetryBreakingConfig.Create(4, true, true);
        int n = 20000;
        var sum = new double[4]; var sq = new double[4]; var b = new double[4];
        for (int i = 0; i < n; i++)
        {
            AttentionBiases<double>.Sample(b, s.BqMean, s.BqStd, 5, i, 0, 0);
            for (int j = 0; j < 4; j++) { sum[j] += b[j]; sq[j] += b[j] * b[j]; }
        }
        for (int j = 0; j < 4; j++)
        {
            double mean = sum[j] / n, sd = Math.Sqrt(sq[j] / n - mean * mean);
            Assert.InRange(mean, 0.5 - 4 * s.BqStd[j] / Math.Sqrt(n), 0.5 + 4 * s.BqStd[j] / Math.Sqrt(n));
            Assert.InRange(sd / s.BqStd[j], 0.97, 1.03);
        }
    }

    [Fact]
    public void Biases_shift_q_and_v_of_every_head_and_leave_k()
    {
        var plain = new Gpt2<double>(Cfg(false, false), CpuBackend<double>.Instance);
        var sb = new Gpt2<double>(Cfg(), CpuBackend<double>.Instance);
        plain.InitializeRandom(2); sb.InitializeRandom(2);
        var (ids, tg) = Batch(1, 4, 11, 1);
        plain.Forward(ids, tg, 1, 4); sb.Forward(ids, tg, 1, 4);
        var q0 = plain.Layers[0].Attn.Part(0); var q1 = sb.Layers[0].Attn.Part(0);
        var k0 = plain.Layers[0].Attn.Part(1); var k1 = sb.Layers[0].Attn.Part(1);
        var v0 = plain.Layers[0].Attn.Part(2); var v1 = sb.Layers[0].Attn.Part(2);
        for (int i = 0; i < q0.Length; i++)
        {
            Assert.Equal(q0[i] + 0.5, q1[i], 12);
            Assert.Equal(k0[i], k1[i]);
            Assert.Equal(v0[i] + 0.5, v1[i], 12);
        }
    }

    static double Loss(Gpt2<double> m, int[] ids, int[] tg, int B, int T) { var (s, n) = m.Forward(ids, tg, B, T); return s / n; }

    /// <summary>Central differences through a whole model with fixed sampled biases (training mode, fixed index).</summary>
    [Theory]
    [InlineData(true, true, MlpActivation.Gelu)]
    [InlineData(true, false, MlpActivation.Prelu)]
    [InlineData(false, false, MlpActivation.Prelu)]
    public void Gradients_match_finite_differences(bool bq, bool bv, MlpActivation act)
    {
        var m = new Gpt2<double>(Cfg(bq, bv, act), CpuBackend<double>.Instance);
        m.InitializeRandom(4);
        int B = 2, T = 5;
        var (ids, tg) = Batch(B, T, 11, 9);
        m.SetForwardMode(true, 3, 17);
        foreach (var p in m.Parameters) p.Grad.Clear();
        var (_, n) = m.Forward(ids, tg, B, T);
        m.Backward(1.0 / n);
        var rng = new Random(5);
        double h = 1e-6;
        foreach (var p in m.Parameters)
        {
            for (int k = 0; k < 4; k++)
            {
                int i = rng.Next(p.Value.Length);
                double x = p.Value.Data[i];
                p.Value.Data[i] = x + h; double lp = Loss(m, ids, tg, B, T);
                p.Value.Data[i] = x - h; double lm = Loss(m, ids, tg, B, T);
                p.Value.Data[i] = x;
                double fd = (lp - lm) / (2 * h), an = p.Grad.Data[i];
                Assert.True(Math.Abs(fd - an) <= 1e-6 + 1e-5 * Math.Abs(fd), $"{p.Name}[{i}]: fd {fd} vs analytic {an}");
            }
        }
    }

    [Fact]
    public void Prelu_op_forward_and_backward_match_finite_differences()
    {
        MiniTransformer.Backends.IBackend<double> ops = CpuBackend<double>.Instance;
        int N = 3, Fd = 5;
        var r = new Random(1);
        var x = new Tensor<double>(N, Fd); var a = new Tensor<double>(Fd); var w = new Tensor<double>(N, Fd);
        for (int i = 0; i < x.Length; i++) { x.Data[i] = r.NextDouble() * 2 - 1; w.Data[i] = r.NextDouble() * 2 - 1; }
        for (int i = 0; i < Fd; i++) a.Data[i] = 0.2 + r.NextDouble();
        var y = new Tensor<double>(N, Fd);
        ops.PreluForward(y, x, a, N, Fd);
        for (int i = 0; i < x.Length; i++) Assert.Equal(x.Data[i] > 0 ? x.Data[i] : a.Data[i % Fd] * x.Data[i], y.Data[i]);
        double L() { ops.PreluForward(y, x, a, N, Fd); double s = 0; for (int i = 0; i < y.Length; i++) s += w.Data[i] * y.Data[i]; return s; }
        var dx = new Tensor<double>(N, Fd); var da = new Tensor<double>(Fd);
        dx.Data[0] = 1; da.Data[0] = 1;   // backward accumulates
        ops.PreluBackward(dx, da, w, x, a, N, Fd);
        dx.Data[0] -= 1; da.Data[0] -= 1;
        double h = 1e-6;
        foreach (var (t, g) in new[] { (x, dx), (a, da) })
            for (int i = 0; i < t.Length; i++)
            {
                double v = t.Data[i];
                t.Data[i] = v + h; double lp = L(); t.Data[i] = v - h; double lm = L(); t.Data[i] = v;
                Assert.Equal((lp - lm) / (2 * h), g.Data[i], 8);
            }
    }

    [Fact]
    public void Prelu_slopes_are_initialised_from_N_0p2_1_and_named()
    {
        var m = new Gpt2<double>(new Gpt2Config(11, 8, 16, 2, 2) with { MlpActivation = MlpActivation.Prelu }, CpuBackend<double>.Instance);
        m.InitializeRandom(3);
        var s = m.Layers.SelectMany(l => l.Mlp.Slopes!.Value.Data).ToArray();
        Assert.Equal("h.0.mlp.act.weight", m.Layers[0].Mlp.Slopes!.Name);
        double mean = s.Average(), sd = Math.Sqrt(s.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(mean, 0.2 - 0.35, 0.2 + 0.35);
        Assert.InRange(sd, 0.75, 1.25);
        Assert.Equal(m.Config.ParameterCount, m.Parameters.Sum(p => (long)p.Value.Length));
    }

    [Fact]
    public void Config_and_slopes_round_trip_through_a_model_directory()
    {
        var cfg = Cfg(true, true, MlpActivation.Prelu);
        var m = new Gpt2<float>(cfg, CpuBackend<float>.Instance);
        m.InitializeRandom(6);
        string dir = Path.Combine(Path.GetTempPath(), "mt-sym-" + Guid.NewGuid().ToString("N"));
        try
        {
            ModelFiles.Save(m, dir, StDType.F32);
            var back = (Gpt2<float>)ModelFiles.Load(dir, CpuBackend<float>.Instance);
            Assert.Equal(MlpActivation.Prelu, back.Config.MlpActivation);
            Assert.Equal(cfg.SymmetryBreaking!.BqStd, back.Config.SymmetryBreaking!.BqStd);
            Assert.True(back.Config.SymmetryBreaking.Bv);
            Assert.Equal(m.Layers[1].Mlp.Slopes!.Value.Data, back.Layers[1].Mlp.Slopes!.Value.Data);
            var (ids, tg) = Batch(1, 6, 11, 2);
            Assert.Equal(m.Forward(ids, tg, 1, 6).LossSum, back.Forward(ids, tg, 1, 6).LossSum);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Fact]
    public void Default_config_json_is_unchanged()
    {
        var c = new Gpt2Config(11, 8, 8, 2, 2);
        Assert.DoesNotContain("symmetry_breaking", c.ToJson());
        Assert.DoesNotContain("mlp_activation", c.ToJson());
    }
}
