using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;
using Xunit;

namespace MiniTransformer.Tests.SymmetryBreaking;

/// <summary>b_Q / b_V and PReLU on BERT: the same mechanism as GPT-2's, through the bidirectional post-LN model.</summary>
public class BertSymmetryBreakingTests
{
    static BertConfig Cfg(bool bq = true, bool bv = true, MlpActivation act = MlpActivation.Gelu)
    {
        var c = new BertConfig(11, 8, 8, 2, 2, 12, TypeVocabSize: 2, LayerNormEps: 1e-5);
        return c with { SymmetryBreaking = bq || bv ? SymmetryBreakingConfig.Create(c.HeadDim, bq, bv) : null, MlpActivation = act };
    }

    static (int[] ids, int[] tg, int[] types, int[] mask) Batch(int B, int T, int V, int seed)
    {
        var r = new Random(seed);
        var mask = Enumerable.Repeat(1, B * T).ToArray();
        mask[B * T - 1] = 0;
        return ([.. Enumerable.Range(0, B * T).Select(_ => r.Next(V))], [.. Enumerable.Range(0, B * T).Select(_ => r.Next(V))],
            [.. Enumerable.Range(0, B * T).Select(_ => r.Next(2))], mask);
    }

    [Fact]
    public void Eval_uses_the_mean_training_resamples_and_only_q_and_v_move()
    {
        var plain = new Bert<double>(Cfg(false, false), CpuBackend<double>.Instance);
        var m = new Bert<double>(Cfg(), CpuBackend<double>.Instance);
        plain.InitializeRandom(1); m.InitializeRandom(1);
        var (ids, tg, types, mask) = Batch(2, 5, 11, 3);
        var biases = m.Layers[0].Attn.Biases!;
        plain.Forward(ids, tg, 2, 5, types, mask);
        m.Forward(ids, tg, 2, 5, types, mask);   // default: eval, b = mean
        Assert.All(biases.LastBq, x => Assert.Equal(0.5, x));
        Assert.All(biases.LastBv, x => Assert.Equal(0.5, x));
        // Layer 0 reads the same input in both models: q and v shifted by the means, k untouched.
        var q0 = plain.Layers[0].Attn.Part(0); var q1 = m.Layers[0].Attn.Part(0);
        var k0 = plain.Layers[0].Attn.Part(1); var k1 = m.Layers[0].Attn.Part(1);
        var v0 = plain.Layers[0].Attn.Part(2); var v1 = m.Layers[0].Attn.Part(2);
        for (int i = 0; i < q0.Length; i++)
        {
            Assert.Equal(q0[i] + 0.5, q1[i], 12);
            Assert.Equal(k0[i], k1[i]);
            Assert.Equal(v0[i] + 0.5, v1[i], 12);
        }
        m.SetForwardMode(true, 7, 0);
        m.Forward(ids, tg, 2, 5, types, mask);
        var a0 = (double[])biases.LastBq.Clone();
        Assert.Contains(a0, x => x != 0.5);
        m.SetForwardMode(true, 7, 1);
        m.Forward(ids, tg, 2, 5, types, mask);
        Assert.NotEqual(a0, biases.LastBq);
        m.SetForwardMode(true, 7, 0);
        m.Forward(ids, tg, 2, 5, types, mask);
        Assert.Equal(a0, biases.LastBq);
    }

    [Theory]
    [InlineData(true, true, MlpActivation.Prelu)]
    [InlineData(true, false, MlpActivation.Gelu)]
    public void Gradients_match_finite_differences(bool bq, bool bv, MlpActivation act)
    {
        var m = new Bert<double>(Cfg(bq, bv, act), CpuBackend<double>.Instance);
        m.InitializeRandom(4);
        int B = 2, T = 5;
        var (ids, tg, types, mask) = Batch(B, T, 11, 9);
        double Loss() { var (s, n) = m.Forward(ids, tg, B, T, types, mask); return s / n; }
        m.SetForwardMode(true, 3, 17);
        foreach (var p in m.Parameters) p.Grad.Clear();
        var (_, cnt) = m.Forward(ids, tg, B, T, types, mask);
        m.Backward(1.0 / cnt);
        var rng = new Random(5);
        double h = 1e-6;
        foreach (var p in m.Parameters)
            for (int k = 0; k < 3; k++)
            {
                int i = rng.Next(p.Value.Length);
                double x = p.Value.Data[i];
                p.Value.Data[i] = x + h; double lp = Loss();
                p.Value.Data[i] = x - h; double lm = Loss();
                p.Value.Data[i] = x;
                double fd = (lp - lm) / (2 * h), an = p.Grad.Data[i];
                Assert.True(Math.Abs(fd - an) <= 1e-6 + 1e-5 * Math.Abs(fd), $"{p.Name}[{i}]: fd {fd} vs analytic {an}");
            }
        if (act == MlpActivation.Prelu) Assert.Contains(m.Parameters, p => p.Name == "bert.encoder.layer.0.act.weight");
    }

    [Fact]
    public void Config_and_slopes_round_trip_and_the_count_is_right()
    {
        var cfg = Cfg(true, true, MlpActivation.Prelu);
        var m = new Bert<float>(cfg, CpuBackend<float>.Instance);
        m.InitializeRandom(6);
        Assert.Equal(cfg.ParameterCount, m.Parameters.Sum(p => (long)p.Value.Length));
        Assert.Contains(m.Layers[0].Mlp.Slopes!.Value.Data, x => x != 0);
        string dir = Path.Combine(Path.GetTempPath(), "mt-bsym-" + Guid.NewGuid().ToString("N"));
        try
        {
            ModelFiles.Save(m, dir, StDType.F32);
            var back = (Bert<float>)ModelFiles.Load(dir, CpuBackend<float>.Instance);
            Assert.Equal(MlpActivation.Prelu, back.Config.MlpActivation);
            Assert.Equal(cfg.SymmetryBreaking!.BqStd, back.Config.SymmetryBreaking!.BqStd);
            Assert.True(back.Config.SymmetryBreaking.Bv);
            Assert.Equal(m.Layers[1].Mlp.Slopes!.Value.Data, back.Layers[1].Mlp.Slopes!.Value.Data);
            var (ids, tg, types, mask) = Batch(1, 6, 11, 2);
            Assert.Equal(m.Forward(ids, tg, 1, 6, types, mask).LossSum, back.Forward(ids, tg, 1, 6, types, mask).LossSum);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
        // A plain BERT's config.json has neither field.
        Assert.DoesNotContain("symmetry_breaking", new BertConfig(11, 8, 8, 2, 2, 12).ToJson());
    }

    static float[] Train(string dir, int steps, bool resume)
    {
        var ops = CpuBackend<float>.Instance;
        var data = MlmSources.Create("synthetic:bio", 3, null);
        var cfg0 = new BertConfig(data.VocabSize, 16, 16, 1, 2, 32);
        var cfg = cfg0 with { SymmetryBreaking = SymmetryBreakingConfig.Create(cfg0.HeadDim, true, true), MlpActivation = MlpActivation.Prelu };
        var tc = new TrainConfig(6, 2, 16, 1e-3, 2, EvalEvery: 3, EvalBatches: 1, Seed: 5);
        ILanguageModel<float> model;
        string? ck = resume ? Trainer<float>.FindCheckpoint(dir) : null;
        if (ck is not null) model = ModelFiles.Load(ck, ops);
        else { var b = new Bert<float>(cfg, ops); b.InitializeRandom(5); model = b; }
        var t = new Trainer<float>(model, data, tc with { Steps = steps }, ops, dir);
        if (ck is not null) t.Resume(ck);
        t.Run();
        return [.. model.Parameters.SelectMany(p => p.Value.Data)];
    }

    [Fact]
    public void Resumed_bert_run_with_sampled_biases_is_bit_identical()
    {
        string a = Path.Combine(Path.GetTempPath(), "mt-bsymr-" + Guid.NewGuid().ToString("N")), b = a + "b";
        try
        {
            var straight = Train(a, 6, false);
            Train(b, 3, false);
            Assert.Equal(straight, Train(b, 6, true));
        }
        finally { foreach (var d in new[] { a, b }) if (Directory.Exists(d)) Directory.Delete(d, true); }
    }
}
