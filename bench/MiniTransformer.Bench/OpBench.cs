using System.Numerics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Tensors;

namespace MiniTransformer.Bench;

/// <summary>Short BenchmarkDotNet jobs (3 warm-ups, 5 iterations): enough on a noisy 2-core machine to compare kernels.</summary>
public sealed class OpConfig : ManualConfig
{
    public OpConfig() => AddJob(Job.ShortRun.WithWarmupCount(3).WithIterationCount(5).WithLaunchCount(1));
}

/// <summary>
/// Every op of the set, forward and backward, at the shapes one GPT-2 124M training step uses (B=4, T=64, d=768,
/// 12 heads, F=3072, V=50257), float32 and float64, 2 threads. Run:
/// <c>dotnet run -c Release --project bench/MiniTransformer.Bench -- --filter '*OpBench*'</c>.
/// </summary>
[Config(typeof(OpConfig))]
public abstract class OpBenchBase<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    const int B = 4, T = 64, C = 768, NH = 12, Ffn = 3072, V = 50257, N = B * T;
    static readonly IBackend<F> Ops = CpuBackend<F>.Instance;

    Tensor<F> x = null!, y = null!, dy = null!, dx = null!, g = null!, b = null!, dg = null!, db = null!, mean = null!, rstd = null!;
    Tensor<F> h = null!, hy = null!, hdy = null!, hdx = null!;
    Tensor<F> qkv = null!, att = null!, att2 = null!, attLse = null!, z = null!, dz = null!, dqkv = null!;
    Tensor<F> logits = null!, lse = null!, dlogits = null!, wte = null!, dwte = null!;
    Tensor<F> wfc = null!, bfc = null!, dwfc = null!, dbfc = null!;
    Tensor<F> p = null!, pg = null!, pm = null!, pv = null!;
    int[] targets = [];
    int step;

    [GlobalSetup]
    public void Setup()
    {
        Parallelism.Threads = 2; Gemm.MaxThreads = 2;
        var rng = new Random(1);
        Tensor<F> R(double s, params int[] shape)
        {
            var t = new Tensor<F>(shape);
            for (int i = 0; i < t.Length; i++) t.Data[i] = F.CreateTruncating(s * (rng.NextDouble() * 2 - 1));
            return t;
        }
        x = R(1, N, C); y = new(N, C); dy = R(1, N, C); dx = new(N, C); g = R(1, C); b = R(1, C); dg = new(C); db = new(C);
        mean = new(N); rstd = new(N);
        h = R(3, N, Ffn); hy = new(N, Ffn); hdy = R(1, N, Ffn); hdx = new(N, Ffn);
        qkv = R(1, B, T, 3 * C); att = new(B, NH, T, T); att2 = new(B, NH, T, T); attLse = new(B, NH, T); z = new(B, T, C); dz = R(1, B, T, C); dqkv = new(B, T, 3 * C);
        logits = R(4, N, V); lse = new(N); dlogits = new(N, V); wte = R(0.02, V, C); dwte = new(V, C);
        wfc = R(0.02, C, Ffn); bfc = R(0.02, Ffn); dwfc = new(C, Ffn); dbfc = new(Ffn);
        p = R(0.02, 7 * 1024 * 1024); pg = R(1e-3, p.Length); pm = new(p.Length); pv = new(p.Length);
        targets = [.. Enumerable.Range(0, N).Select(_ => rng.Next(V))];
        Ops.LayerNormForward(y, mean, rstd, x, g, b, N, C, 1e-5);
        Ops.AttentionForward(z, att, attLse, qkv, default, B, T, C, NH, causal: true);
        Ops.CrossEntropyForward(lse, logits, targets, N, V);
    }

    [Benchmark] public void LayerNormForward() => Ops.LayerNormForward(y, mean, rstd, x, g, b, N, C, 1e-5);
    [Benchmark] public void LayerNormBackward() => Ops.LayerNormBackward(dx, dg, db, dy, x, g, mean, rstd, N, C);
    [Benchmark] public void ResidualLayerNormForward() => Ops.ResidualLayerNormForward(dx, y, mean, rstd, x, dy, g, b, N, C, 1e-5);
    [Benchmark] public void GeluForward() => Ops.GeluForward(hy, h, N * Ffn, GeluForm.Tanh);
    [Benchmark] public void GeluBackward() => Ops.GeluBackward(hdx, hdy, h, N * Ffn, GeluForm.Tanh);
    [Benchmark] public void AttentionForward() => Ops.AttentionForward(z, att, attLse, qkv, default, B, T, C, NH, causal: true);
    [Benchmark] public void AttentionBackward() => Ops.AttentionBackward(dqkv, dz, qkv, z, att, attLse, default, B, T, C, NH, causal: true);
    /// <summary>The same shapes without the causal mask: every score computed (the causal forward skips the upper triangle).</summary>
    [Benchmark] public void AttentionForwardBidirectional() => Ops.AttentionForward(z, att2, attLse, qkv, default, B, T, C, NH, causal: false);
    /// <summary>The check Optimizer.ZeroGrad makes after a fused update: one read over 7.3M zero gradients.</summary>
    [Benchmark] public bool GradientsAreZero() => CpuBackend<F>.IsZero(pm);
    [Benchmark] public double CrossEntropyForward() => Ops.CrossEntropyForward(lse, logits, targets, N, V).LossSum;
    [Benchmark] public void CrossEntropyBackward() => Ops.CrossEntropyBackward(dlogits, logits, lse, targets, N, V, 1.0 / N);
    [Benchmark] public void LmHeadForward() => Ops.MatmulForward(logits, y, wte, null, N, C, V, WeightLayout.OutIn);
    [Benchmark] public void LmHeadBackward() => Ops.MatmulBackward(dx, dwte, null, dlogits, y, wte, N, C, V, WeightLayout.OutIn);
    [Benchmark] public void FcForward() => Ops.MatmulForward(h, x, wfc, bfc, N, C, Ffn, WeightLayout.InOut);
    [Benchmark] public void FcGeluForward() => Ops.MatmulGeluForward(h, hy, x, wfc, bfc, N, C, Ffn, WeightLayout.InOut, GeluForm.Tanh);
    [Benchmark] public void FcBackward() => Ops.MatmulBackward(dx, dwfc, dbfc, hdy, x, wfc, N, C, Ffn, WeightLayout.InOut);
    /// <summary>AdamW with gradient zeroing over 7.3M parameters (one transformer layer).</summary>
    [Benchmark] public void AdamWZeroGrad() =>
        Ops.AdamWZeroGrad(p, pg, pm, pv, new AdamWStep(1e-4, 0.9, 0.95, 1e-8, 0.1, ++step), zeroGrad: false);
    [Benchmark] public double SumOfSquares() => Ops.SumOfSquares(pg);
}

public class OpBenchF32 : OpBenchBase<float> { }
public class OpBenchF64 : OpBenchBase<double> { }
