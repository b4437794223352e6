using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Tests.Models;

/// <summary>
/// Whole-BERT gradients against central finite differences in float64 (every parameter tensor, the pooler included,
/// rows padded down to one token, three token types, both gelu forms), and float32 against float64.
/// </summary>
public class BertGradientTests
{
    const int B = 3, T = 5;
    static readonly int[] Mask = [1, 1, 1, 1, 1, /**/ 1, 1, 1, 0, 0, /**/ 1, 0, 0, 0, 0];
    static readonly int[] Types = [0, 1, 2, 1, 0, /**/ 0, 0, 1, 1, 1, /**/ 2, 0, 0, 0, 0];

    static BertConfig Config(string act, bool tied) => new(VocabSize: 17, MaxPositionEmbeddings: 7, HiddenSize: 12,
        NumHiddenLayers: 2, NumAttentionHeads: 3, IntermediateSize: 20, TypeVocabSize: 3, LayerNormEps: 1e-12, HiddenAct: act,
        Pooler: true, TieWordEmbeddings: tied);

    static Bert<F> Random<F>(BertConfig c, int seed) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var m = new Bert<F>(c, CpuBackend<F>.Instance);
        var rng = new Random(seed);
        foreach (var p in m.Parameters)
        {
            var d = p.Value.Span;
            bool ln = p.Name.Contains("LayerNorm", StringComparison.Ordinal) && p.Name.EndsWith(".weight", StringComparison.Ordinal);
            for (int i = 0; i < d.Length; i++) d[i] = F.CreateTruncating((ln ? 1 : 0) + (p.Decays ? 0.3 : 0.1) * (2 * rng.NextDouble() - 1));
        }
        return m;
    }

    static (int[] Ids, int[] Targets, double[] Probe) Batch(BertConfig c)
    {
        var rng = new Random(7);
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(c.VocabSize)).ToArray();
        var targets = Enumerable.Range(0, B * T).Select(n => Mask[n] == 1 && n % 3 != 1 ? rng.Next(c.VocabSize) : -100).ToArray();
        var probe = Enumerable.Range(0, B * c.HiddenSize).Select(_ => rng.NextDouble() - 0.5).ToArray();
        return (ids, targets, probe);
    }

    /// <summary>Loss = mean MLM cross-entropy + Σ probe ⊙ pooled (so the pooler is on the gradient path).</summary>
    static double Loss<F>(Bert<F> m, int[] ids, int[] targets, double[] probe) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var (sum, count) = m.Forward(ids, targets, B, T, Types, Mask);
        double l = sum / count;
        for (int i = 0; i < probe.Length; i++) l += probe[i] * double.CreateTruncating(m.Pooled.Data[i]);
        return l;
    }

    static void Backward<F>(Bert<F> m, int[] ids, int[] targets, double[] probe) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var (_, count) = m.Forward(ids, targets, B, T, Types, Mask);
        var g = new Tensor<F>(B, m.Config.HiddenSize);
        for (int i = 0; i < probe.Length; i++) g.Data[i] = F.CreateTruncating(probe[i]);
        m.Backward(1.0 / count, g);
    }

    [Theory]
    [InlineData("gelu", true)]
    [InlineData("gelu", false)]
    [InlineData("gelu_new", true)]
    public void Float64GradientsMatchFiniteDifferences(string act, bool tied)
    {
        var c = Config(act, tied);
        var m = Random<double>(c, 11);
        var (ids, targets, probe) = Batch(c);
        foreach (var p in m.Parameters) p.Grad.Clear();
        Backward(m, ids, targets, probe);
        var rng = new Random(3);
        const double h = 1e-5;
        var group = new List<(string, double[], double[])>();
        foreach (var p in m.Parameters)
        {
            var idx = Enumerable.Range(0, Math.Min(6, p.Value.Length)).Select(_ => rng.Next(p.Value.Length)).Distinct().ToArray();
            var analytic = idx.Select(i => p.Grad.Data[i]).ToArray();
            var fd = new double[idx.Length];
            for (int k = 0; k < idx.Length; k++)
            {
                double v = p.Value.Data[idx[k]];
                p.Value.Data[idx[k]] = v + h; double lp = Loss(m, ids, targets, probe);
                p.Value.Data[idx[k]] = v - h; double lm = Loss(m, ids, targets, probe);
                p.Value.Data[idx[k]] = v;
                fd[k] = (lp - lm) / (2 * h);
            }
            group.Add((p.Name, analytic, fd));
        }
        Numerics.AssertClose(group, 1e-6);
        Assert.Equal(c.ParameterCount, m.Parameters.Sum(p => (long)p.Value.Length));
    }

    [Fact]
    public void Float32MatchesFloat64AndBackwardAccumulates()
    {
        var c = Config("gelu", true);
        var m64 = Random<double>(c, 5);
        var m32 = new Bert<float>(c, CpuBackend<float>.Instance);
        for (int i = 0; i < m64.Parameters.Count; i++)
            for (int j = 0; j < m64.Parameters[i].Value.Length; j++)
                m32.Parameters[i].Value.Data[j] = (float)m64.Parameters[i].Value.Data[j];
        var (ids, targets, probe) = Batch(c);
        Backward(m64, ids, targets, probe);
        Backward(m32, ids, targets, probe);
        Numerics.AssertClose([("logits", Numerics.ToDoubles<float>(m32.Logits.Span), m64.Logits.Data),
            .. m64.Parameters.Select((p, i) => (p.Name, Numerics.ToDoubles<float>(m32.Parameters[i].Grad.Span), p.Grad.Data))], 1e-4);
        var once = m64.Parameters.Select(p => p.Grad.Data.ToArray()).ToList();
        Backward(m64, ids, targets, probe);
        for (int i = 0; i < once.Count; i++)
            for (int j = 0; j < once[i].Length; j++)
                Assert.Equal(2 * once[i][j], m64.Parameters[i].Grad.Data[j], 1e-12);
    }

    /// <summary>Key biases shift every score of a query equally, so softmax ignores them: their gradient is zero.</summary>
    [Fact]
    public void KeyBiasGradientIsZeroUpToRoundOff()
    {
        var c = Config("gelu", true);
        var m = Random<double>(c, 9);
        var (ids, targets, probe) = Batch(c);
        Backward(m, ids, targets, probe);
        foreach (var l in m.Layers)
        {
            var g = l.Attn.Bqkv.Grad.Data;
            int C = c.HiddenSize;
            double key = Math.Sqrt(g.Skip(C).Take(C).Sum(x => x * x)), query = Math.Sqrt(g.Take(C).Sum(x => x * x));
            Assert.True(key < 1e-12 * Math.Max(1, query), $"key-bias gradient norm {key} (query {query})");
        }
    }
}
