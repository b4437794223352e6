using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.Models;

/// <summary>Whole-model gradients at a realistic shape (the demo model's) against finite differences and float64.</summary>
public class Gpt2GradientTests
{
    static readonly Gpt2Config Cfg = new(26, 64, 64, 2, 4);

    static (int[] Ids, int[] Targets) Batch(int B, int T)
    {
        var rng = new Random(5);
        var ids = new int[B * T];
        var tg = new int[B * T];
        for (int i = 0; i < ids.Length; i++) { ids[i] = rng.Next(26); tg[i] = i % 5 == 0 ? -100 : rng.Next(26); }
        return (ids, tg);
    }

    [Fact]
    public void Float64GradientsMatchFiniteDifferencesAtDemoShape()
    {
        const int B = 2, T = 64;
        var m = new Gpt2<double>(Cfg, CpuBackend<double>.Instance);
        m.InitializeRandom(3);
        // Larger weights than the initialisation so every path matters.
        foreach (var p in m.Parameters) for (int i = 0; i < p.Value.Length; i++) p.Value.Data[i] += 0.05 * Math.Sin(7 * i + p.Name.Length);
        var (ids, tg) = Batch(B, T);
        var (_, n) = m.Forward(ids, tg, B, T);
        m.Backward(1.0 / n);
        double Loss() { var (s, c) = m.Forward(ids, tg, B, T); return s / c; }
        var rng = new Random(9);
        double h = 1e-5;
        foreach (var p in m.Parameters)
        {
            for (int k = 0; k < 2; k++)
            {
                int i = rng.Next(p.Value.Length);
                double saved = p.Value.Data[i];
                p.Value.Data[i] = saved + h; double lp = Loss();
                p.Value.Data[i] = saved - h; double lm = Loss();
                p.Value.Data[i] = saved;
                double fd = (lp - lm) / (2 * h), an = p.Grad.Data[i];
                Assert.True(Math.Abs(fd - an) <= 1e-6 * Math.Max(1e-3, Math.Abs(fd)) + 1e-9, $"{p.Name}[{i}]: backward {an:E6} vs finite difference {fd:E6}");
            }
        }
    }

    [Fact]
    public void Float32MatchesFloat64AtDemoShape()
    {
        const int B = 16, T = 64;
        var m64 = new Gpt2<double>(Cfg, CpuBackend<double>.Instance);
        var m32 = new Gpt2<float>(Cfg, CpuBackend<float>.Instance);
        m64.InitializeRandom(4);
        for (int j = 0; j < m64.Parameters.Count; j++)
            for (int i = 0; i < m64.Parameters[j].Value.Length; i++)
            {
                m32.Parameters[j].Value.Data[i] = (float)m64.Parameters[j].Value.Data[i];
                m64.Parameters[j].Value.Data[i] = m32.Parameters[j].Value.Data[i];
            }
        var (ids, tg) = Batch(B, T);
        var (s64, n) = m64.Forward(ids, tg, B, T);
        m64.Backward(1.0 / n);
        var (s32, _) = m32.Forward(ids, tg, B, T);
        m32.Backward(1.0 / n);
        Assert.Equal(s64 / n, s32 / n, 4);
        Numerics.AssertClose([.. m64.Parameters.Select((p, j) => (p.Name, Numerics.ToDoubles<float>(m32.Parameters[j].Grad.Span), p.Grad.Data))], 1e-4);
    }
}
