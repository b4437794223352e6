using MiniTransformer.Analysis;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Tests.Analysis;

/// <summary>
/// <see cref="BqAlignment"/> (arXiv 2601.22257's key–⟨b_Q⟩ cosine) against keys computed another way: every token's
/// embedding row through the backend's matmul with the model's fused QKV weight, in its stored layout.
/// </summary>
public sealed class BqAlignmentTests
{
    const int V = 13, C = 12, H = 3, L = 2;

    /// <summary>Per layer and head, every token's cosine between its key (E[t]·W_K, no bias) and the mean b_Q.</summary>
    static double[][][] ExpectedCosines(Tensor<double> wte, IEnumerable<Tensor<double>> wqkv, WeightLayout layout, double[] bq)
    {
        int hs = C / H;
        double bqNorm = Math.Sqrt(bq.Sum(x => x * x));
        var ops = CpuBackend<double>.Instance;
        return [.. wqkv.Select(w =>
        {
            var qkv = new Tensor<double>(V, 3 * C);
            ops.MatmulForward(qkv, wte, w, null, V, C, 3 * C, layout);
            return Enumerable.Range(0, H).Select(h => Enumerable.Range(0, V).Select(t =>
            {
                var k = Enumerable.Range(0, hs).Select(j => qkv.Data[t * 3 * C + C + h * hs + j]).ToArray();
                return k.Zip(bq, (a, b) => a * b).Sum() / (Math.Sqrt(k.Sum(x => x * x)) * bqNorm);
            }).ToArray()).ToArray();
        })];
    }

    static void AssertMatches(List<BqAlignment.HeadResult> got, double[][][] expected, int topK)
    {
        Assert.Equal(L * H, got.Count);
        foreach (var r in got)
        {
            var e = expected[r.Layer][r.Head];
            Assert.Equal(topK, r.Top.Length);
            Assert.Equal(topK, r.Bottom.Length);
            foreach (var (t, cos) in r.Top.Concat(r.Bottom)) Assert.Equal(e[t], cos, 12);
            Assert.Equal(Array.IndexOf(e, e.Max()), r.Top[0].Token);
            Assert.Equal(Array.IndexOf(e, e.Min()), r.Bottom[0].Token);
            for (int i = 1; i < topK; i++)
            {
                Assert.True(r.Top[i - 1].Cosine >= r.Top[i].Cosine);
                Assert.True(r.Bottom[i - 1].Cosine <= r.Bottom[i].Cosine);
            }
            Assert.Equal(e.Average(), r.MeanCosine, 12);
        }
    }

    [Fact]
    public void Gpt2_cosines_equal_keys_from_the_backend_matmul()
    {
        var c = new Gpt2Config(V, 8, C, L, H);
        c = c with { SymmetryBreaking = SymmetryBreakingConfig.Create(c.HeadDim, bq: true, bv: false) };
        var m = new Gpt2<double>(c, CpuBackend<double>.Instance);
        m.InitializeRandom(3);
        var got = BqAlignment.Analyze(m, null, 4);
        AssertMatches(got, ExpectedCosines(m.Wte.Value, m.Layers.Select(l => l.Attn.Wqkv.Value), WeightLayout.InOut, c.SymmetryBreaking!.BqMean), 4);
    }

    [Fact]
    public void Bert_cosines_equal_keys_from_the_backend_matmul()
    {
        var c = new BertConfig(V, 8, C, L, H, 20, TypeVocabSize: 2);
        c = c with { SymmetryBreaking = SymmetryBreakingConfig.Create(c.HeadDim, bq: true, bv: true) };
        var m = new Bert<double>(c, CpuBackend<double>.Instance);
        m.InitializeRandom(4);
        var got = BqAlignment.Analyze(m, null, 5);
        AssertMatches(got, ExpectedCosines(m.Wte.Value, m.Layers.Select(l => l.Attn.Wqkv.Value), WeightLayout.OutIn, c.SymmetryBreaking!.BqMean), 5);
    }

    [Fact]
    public void A_model_without_bq_is_refused()
    {
        var m = new Bert<double>(new BertConfig(V, 8, C, L, H, 20), CpuBackend<double>.Instance);
        Assert.Throws<InputException>(() => BqAlignment.Analyze(m, null, 3));
    }
}
