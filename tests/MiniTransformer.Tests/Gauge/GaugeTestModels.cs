using MiniTransformer.Backends.Cpu;
using MiniTransformer.Gauge;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.Gauge;

/// <summary>Tiny GPT-2s at a generic point (every weight, bias and gain random), for the gauge tests.</summary>
static class GaugeTestModels
{
    public static Gpt2Config Config(int d = 4, int H = 2, int F = 6, int V = 7, int T = 3, int L = 1, bool tied = true, double eps = 1e-5) =>
        new(V, T, d, L, H, eps, F, tied);

    /// <summary>Weights N(0, 0.5²), biases N(0, 0.2²), gains 1 + N(0, 0.2²): a generic point.</summary>
    public static Gpt2<double> Generic(Gpt2Config c, int seed = 7)
    {
        var m = new Gpt2<double>(c, CpuBackend<double>.Instance);
        var rng = new Random(seed);
        foreach (var p in m.Parameters)
        {
            var s = p.Value.Span;
            bool gain = p.Name.EndsWith("ln_1.weight") || p.Name.EndsWith("ln_2.weight") || p.Name == "ln_f.weight";
            for (int i = 0; i < s.Length; i++)
                s[i] = gain ? 1 + 0.2 * GroupElements.Gaussian(rng)
                    : p.Value.Rank == 1 ? 0.2 * GroupElements.Gaussian(rng)
                    : 0.5 * GroupElements.Gaussian(rng);
        }
        return m;
    }

    public static BertConfig BertConfig(int d = 4, int H = 2, int F = 6, int V = 7, int T = 3, int S = 2, int L = 1,
        double eps = 1e-3, bool pooler = false, bool tied = true) =>
        new(V, T, d, L, H, F, S, eps, Pooler: pooler, TieWordEmbeddings: tied);

    /// <summary>A BERT at a generic point: weights N(0, 0.5²), biases N(0, 0.2²), LayerNorm gains 1 + N(0, 0.2²).</summary>
    public static Bert<double> GenericBert(BertConfig c, int seed = 7)
    {
        var m = new Bert<double>(c, CpuBackend<double>.Instance);
        var rng = new Random(seed);
        foreach (var p in m.Parameters)
        {
            var s = p.Value.Span;
            bool gain = p.Name.EndsWith("LayerNorm.weight");
            for (int i = 0; i < s.Length; i++)
                s[i] = gain ? 1 + 0.2 * GroupElements.Gaussian(rng)
                    : p.Value.Rank == 1 ? 0.2 * GroupElements.Gaussian(rng)
                    : 0.5 * GroupElements.Gaussian(rng);
        }
        return m;
    }
}
