using System.Diagnostics;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends.Cuda;

/// <summary>One timing: median milliseconds over the repeats, the rate it implies, and a correctness figure.</summary>
public sealed record BenchResult(string Name, string Shape, double Ms, double Tflops, double RelError, string Note);

/// <summary>
/// Kernel timings on device buffers (no host copies in the timed region): median of CUDA-event timings after warm-up,
/// on random data (never zeros). The GPU check compares these with cuBLAS/PyTorch on the same machine.
/// </summary>
public static class KernelBench
{
    static double Median(List<double> v) { v.Sort(); return v[v.Count / 2]; }

    static float[] Rand(int seed, long n, float scale = 1f)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    static double TimeMedian(CudaDevice dev, Action work, int warmup = 3, int reps = 10)
    {
        for (int i = 0; i < warmup; i++) work();
        dev.Synchronize();
        var t = new List<double>();
        for (int i = 0; i < reps; i++) t.Add(dev.Time(work));
        return Median(t);
    }

    static double RelErr(float[] ours, float[] reference)
    {
        double d = 0, n = 0;
        for (int i = 0; i < ours.Length; i++) { double e = ours[i] - reference[i]; d += e * e; n += (double)reference[i] * reference[i]; }
        return Math.Sqrt(d / Math.Max(n, 1e-30));
    }

    public static IEnumerable<BenchResult> Run(CudaDevice dev, int size = 4096, int attB = 16, int attT = 1024, int attNH = 12, int attHs = 64,
        int stepB = 8, int stepT = 1024)
    {
        var be = new CudaBackend(dev);
        // ---- matmul: C[M,N] = A[M,K]·B[N,K]ᵀ, bf16 tensor cores vs the f32 tiled kernel (same inputs)
        int M = size, N = size, K = size;
        double flops = 2.0 * M * N * K;
        using (var a32 = dev.Alloc(4L * M * K))
        using (var b32 = dev.Alloc(4L * N * K))
        using (var a16 = dev.Alloc(2L * M * K))
        using (var b16 = dev.Alloc(2L * N * K))
        using (var c = dev.Alloc(4L * M * N))
        using (var cRef = dev.Alloc(4L * M * N))
        {
            dev.Upload<float>(a32, Rand(1, (long)M * K));
            dev.Upload<float>(b32, Rand(2, (long)N * K));
            dev.Launch("matmul.cu", "f32_to_bf16_kernel", (CudaDevice.Blocks((long)M * K, 256), 1, 1), 256, 0, a16, a32, (long)M * K);
            dev.Launch("matmul.cu", "f32_to_bf16_kernel", (CudaDevice.Blocks((long)N * K, 256), 1, 1), 256, 0, b16, b32, (long)N * K);
            // the reference: the bf16-rounded inputs multiplied in f32 (so the error measures the kernel, not the rounding)
            dev.Launch("matmul.cu", "bf16_to_f32_kernel", (CudaDevice.Blocks((long)M * K, 256), 1, 1), 256, 0, a32, a16, (long)M * K);
            dev.Launch("matmul.cu", "bf16_to_f32_kernel", (CudaDevice.Blocks((long)N * K, 256), 1, 1), 256, 0, b32, b16, (long)N * K);
            void Sg() => be.Sgemm(cRef, a32, b32, M, N, K, K, K, N, false, true, false);
            double msF32 = TimeMedian(dev, Sg, 1, 3);
            void Tc() => dev.Launch("matmul.cu", "gemm_bf16_tc", (CudaDevice.Blocks(N, 128), CudaDevice.Blocks(M, 128), 1), 256, 0,
                c, a16, b16, null, M, N, K);
            double msTc = TimeMedian(dev, Tc);
            var hc = new float[(long)M * N];
            var hr = new float[(long)M * N];
            dev.Download<float>(hc, c);
            dev.Download<float>(hr, cRef);
            double err = RelErr(hc, hr);
            yield return new BenchResult("matmul f32 (tiled SIMT)", $"{M}x{N}x{K}", msF32, flops / msF32 / 1e9, 0, "reference for the bf16 check");
            yield return new BenchResult("matmul bf16 (mma.sync)", $"{M}x{N}x{K}", msTc, flops / msTc / 1e9, err, "rel err vs f32 on bf16-rounded inputs");
        }

        // ---- attention: qkv [B,T,3C], causal; forward flash-style (no pattern) and forward+backward through the op set's kernels
        int B = attB, T = attT, NH = attNH, C = NH * attHs;
        double attFlops = 4.0 * B * NH * (double)T * T * attHs / 2;   // causal: half the q·kᵀ and p·v work
        using (var qkv = dev.Alloc(4L * B * T * 3 * C))
        using (var y = dev.Alloc(4L * B * T * C))
        using (var lse = dev.Alloc(4L * B * NH * T))
        using (var att = dev.Alloc(4L * B * NH * T * T))
        using (var ds = dev.Alloc(4L * B * NH * T * T))
        using (var dy = dev.Alloc(4L * B * T * C))
        using (var dqkv = dev.Alloc(4L * B * T * 3 * C))
        {
            dev.Upload<float>(qkv, Rand(3, (long)B * T * 3 * C));
            dev.Upload<float>(dy, Rand(4, (long)B * T * C));
            uint shared = CudaBackend.AttentionShared(attHs);
            var grid = (CudaDevice.Blocks(T, CudaBackend.AttentionRows), (uint)(B * NH), 1u);
            void Fwd(bool pattern) => dev.Launch("attention.cu", "attention_fwd", grid, 32 * CudaBackend.AttentionRows, shared,
                y, lse, pattern ? att : null, qkv, null, B, T, C, NH, 1);
            double msFwd = TimeMedian(dev, () => Fwd(false));
            long n = (long)B * T * C;
            void Bwd()
            {
                dev.Zero(dqkv, 4L * B * T * 3 * C);
                dev.Launch("attention.cu", "attention_bwd_ds", grid, 32 * CudaBackend.AttentionRows, 0, ds, dy, qkv, att, B, T, C, NH);
                dev.Launch("attention.cu", "attention_bwd_dq", (CudaDevice.Blocks(n, 256), 1, 1), 256, 0, dqkv, ds, qkv, B, T, C, NH);
                dev.Launch("attention.cu", "attention_bwd_dkdv", (CudaDevice.Blocks(n, 256), 1, 1), 256, 0, dqkv, ds, att, dy, qkv, B, T, C, NH);
            }
            double msFb = TimeMedian(dev, () => { Fwd(true); Bwd(); }, 1, 3);
            string shape = $"B{B} T{T} H{NH} d{attHs} causal";
            yield return new BenchResult("attention fwd (flash, f32)", shape, msFwd, attFlops / msFwd / 1e9, 0, "");
            yield return new BenchResult("attention fwd+bwd (f32, pattern)", shape, msFb, 3.5 * attFlops / msFb / 1e9, 0,
                "backward reads the saved T×T pattern");
        }

        // ---- a GPT-2 124M training step through the op set, device-resident: weights, activations, gradients and AdamW
        // state stay on the GPU; per step the host receives the summed loss (8 bytes) and the gradient-norm partial sums.
        // Float32 storage, then bf16 storage (float32 arithmetic, float32 master weights and moments).
        foreach (var storage in new[] { DType.F32, DType.BF16 })
        {
            GC.Collect(); GC.WaitForPendingFinalizers();   // free the previous model's device copies first
            using var sbe = new CudaBackend(dev, storage);
            var cfg = new Gpt2Config(50257, 1024, 768, 12, 12, 1e-5, null, true);
            var model = new Gpt2<float>(cfg, sbe);
            model.InitializeRandom(1);
            var opt = new Training.Optimizer<float>(model.Parameters, new Training.OptimizerConfig(), sbe);
            int sb = stepB, st = stepT;
            var rng = new Random(5);
            int[] ids = Enumerable.Range(0, sb * st).Select(_ => rng.Next(50257)).ToArray();
            int[] tg = Enumerable.Range(0, sb * st).Select(_ => rng.Next(50257)).ToArray();
            double loss = 0;
            void Step()
            {
                opt.ZeroGrad();
                var (s, cnt) = model.Forward(ids, tg, sb, st);
                model.Backward(1.0 / cnt);
                opt.Update(1e-4, s / cnt);
                loss = s / cnt;
            }
            Step();   // compiles the kernels, attaches every tensor's device copy, uploads the weights once
            dev.Synchronize();
            var times = new List<double>();
            for (int i = 0; i < 3; i++)
            {
                var sw = Stopwatch.StartNew();
                Step();
                dev.Synchronize();
                times.Add(sw.Elapsed.TotalMilliseconds);
            }
            double ms = Median(times);
            long nParams = model.Parameters.Sum(p => (long)p.Value.Length);
            double stepFlops = 6.0 * nParams * sb * st + 12.0 * cfg.NLayer * sb * (double)st * st * cfg.NEmbd / 2;   // + causal attention
            yield return new BenchResult($"gpt2-124m train step ({(storage == DType.BF16 ? "bf16" : "f32")}, resident)", $"B{sb} T{st}", ms, stepFlops / ms / 1e9, 0,
                $"fwd+bwd+AdamW; {sb * st / (ms / 1000):F0} tokens/s; loss {loss:F3}");
        }
        be.Dispose();
    }
}
