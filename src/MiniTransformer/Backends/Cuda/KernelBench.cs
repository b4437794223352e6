using System.Diagnostics;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Backends.Cuda;

/// <summary>One timing: median milliseconds over the repeats, the rate it implies, and a correctness figure.</summary>
public sealed record BenchResult(string Name, string Shape, double Ms, double Tflops, double RelError, string Note)
{
    /// <summary>The GPT-2 training-step rows only: what the GPU check pairs with PyTorch's step.</summary>
    public StepFigures? Step { get; init; }
}

/// <summary>
/// A training step's figures. <see cref="FlopsPerToken"/> = 6·N + 6·L·C·T (llm.c's <c>gpt2_estimate_mfu</c>, after PaLM's
/// appendix B, causal attention counted once; N every parameter, the tied embedding once); <see cref="Mfu"/> = that ×
/// tokens/s ÷ the GPU's dense bf16 peak (null when the peak is not known), for either storage.
/// </summary>
public sealed record StepFigures(string Precision, int Batch, int Seq, long NParams, double FlopsPerToken, double TokensPerS,
    double? Mfu, double? PeakTflops, double Loss);

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

    /// <summary>
    /// Dense (no sparsity) peaks in TFLOP/s by NVIDIA's datasheets, bf16 tensor core and plain fp32, by device name; the
    /// H200 SXM's are the H100 SXM's (989 and 67). <c>MT_PEAK_TFLOPS</c> overrides the bf16 one. Same table as
    /// gpu/torch_bench.py.
    /// </summary>
    public static (double? Bf16, double? Fp32) Peaks(string deviceName)
    {
        (double?, double?) p = (null, null);
        bool hopper = deviceName.Contains("H100") || deviceName.Contains("H200");
        if (deviceName.Contains("H100 PCIe")) p = (756.0, 51.0);
        else if (hopper && deviceName.Contains("NVL")) p = (835.0, 60.0);
        else if (hopper) p = (989.4, 66.9);
        else if (deviceName.Contains("A100")) p = (312.0, 19.5);
        if (double.TryParse(Environment.GetEnvironmentVariable("MT_PEAK_TFLOPS"), System.Globalization.NumberStyles.Float,
                System.Globalization.CultureInfo.InvariantCulture, out double env) && env > 0)
            p.Item1 = env;
        return p;
    }

    /// <summary>The rows of <c>mt kernels bench</c>: matmul, attention, then a GPT-2 124M training step at stepB × stepT
    /// (the GPU check's 16 × 1024) with float32 and with bf16 storage. <paramref name="stepModel"/> replaces GPT-2 124M
    /// (<see cref="Tiny"/>: the shapes of a dry run on the CPU emulator, the same as gpu/torch_bench.py --tiny).</summary>
    public static IEnumerable<BenchResult> Run(CudaDevice dev, int size = 4096, int attB = 16, int attT = 1024, int attNH = 12, int attHs = 64,
        int stepB = 16, int stepT = 1024, Gpt2Config? stepModel = null)
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

        // ---- attention: qkv [B,T,3C], causal; forward flash-style (no pattern) and forward + flash-style backward, through
        // the backend's dispatch: float32 storage (CUDA cores) and bf16 storage (tensor cores on sm_80+ where the head size
        // is a multiple of 16, else CUDA cores). Both storages get the same values: the float32 inputs are replaced by their
        // bf16 roundings, so the bf16 rows' error (y; dqkv) against the float32 kernels measures the bf16 kernels (bf16
        // operands P and dS, bf16 outputs), not the rounding of the inputs.
        int B = attB, T = attT, NH = attNH, C = NH * attHs;
        double attFlops = 4.0 * B * NH * (double)T * T * attHs / 2;   // causal: half the q·kᵀ and p·v work
        long nQkv = (long)B * T * 3 * C, nY = (long)B * T * C, nRows = (long)B * NH * T;
        using (var be16 = new CudaBackend(dev, DType.BF16))
        using (var qkv = dev.Alloc(4 * nQkv))
        using (var y = dev.Alloc(4 * nY))
        using (var lse = dev.Alloc(4 * nRows))
        using (var dy = dev.Alloc(4 * nY))
        using (var dqkv = dev.Alloc(4 * nQkv))
        using (var qkv16 = dev.Alloc(2 * nQkv))
        using (var y16 = dev.Alloc(2 * nY))
        using (var dy16 = dev.Alloc(2 * nY))
        using (var dqkv16 = dev.Alloc(2 * nQkv))
        {
            void ToBf16(DeviceBuffer dst, DeviceBuffer src, long n) =>
                dev.Launch("matmul.cu", "f32_to_bf16_kernel", (CudaDevice.Blocks(n, 256), 1, 1), 256, 0, dst, src, n);
            void ToF32(DeviceBuffer dst, DeviceBuffer src, long n) =>
                dev.Launch("matmul.cu", "bf16_to_f32_kernel", (CudaDevice.Blocks(n, 256), 1, 1), 256, 0, dst, src, n);
            dev.Upload<float>(qkv, Rand(3, nQkv));
            dev.Upload<float>(dy, Rand(4, nY));
            ToBf16(qkv16, qkv, nQkv);
            ToBf16(dy16, dy, nY);
            ToF32(qkv, qkv16, nQkv);
            ToF32(dy, dy16, nY);
            string shape = $"B{B} T{T} H{NH} d{attHs} causal";
            foreach (bool bf in new[] { false, true })
            {
                var (sb, q, yy, ddy, dq) = bf ? (be16, qkv16, y16, dy16, dqkv16) : (be, qkv, y, dy, dqkv);
                void Fwd() => sb.AttentionForwardOnDevice(yy, lse, null, q, null, B, T, C, NH, true);
                void Bwd()
                {
                    dev.Zero(dq, (bf ? 2 : 4) * nQkv);
                    sb.AttentionBackwardOnDevice(dq, ddy, q, yy, lse, null, B, T, C, NH, true);
                }
                double msFwd = TimeMedian(dev, Fwd);
                double msFb = TimeMedian(dev, () => { Fwd(); Bwd(); });
                if (!bf)
                {
                    yield return new BenchResult("attention fwd (flash, f32)", shape, msFwd, attFlops / msFwd / 1e9, 0, "CUDA cores");
                    yield return new BenchResult("attention fwd+bwd (flash, f32)", shape, msFb, 3.5 * attFlops / msFb / 1e9, 0,
                        "backward recomputes P from q, k and lse (no T×T buffer)");
                    continue;
                }
                // the bf16 results (the last fwd+bwd's y and dqkv) against the float32 kernels' on the same inputs
                double Err(DeviceBuffer ours16, DeviceBuffer ref32, long n)
                {
                    using var tmp = dev.Alloc(4 * n);
                    ToF32(tmp, ours16, n);
                    var a = new float[n];
                    var r = new float[n];
                    dev.Download<float>(a, tmp);
                    dev.Download<float>(r, ref32);
                    return RelErr(a, r);
                }
                string path = be16.AttentionOnTensorCores(attHs) ? "tensor cores (mma.sync, bf16 P and dS)" : "CUDA cores";
                yield return new BenchResult("attention fwd (flash, bf16)", shape, msFwd, attFlops / msFwd / 1e9, Err(y16, y, nY),
                    $"{path}; rel err of y vs the f32 kernels on the same inputs");
                yield return new BenchResult("attention fwd+bwd (flash, bf16)", shape, msFb, 3.5 * attFlops / msFb / 1e9, Err(dqkv16, dqkv, nQkv),
                    $"{path}; rel err of dqkv vs the f32 kernels on the same inputs");
            }
        }

        be.Dispose();
        // ---- a GPT-2 124M training step through the op set, device-resident (see GptStep): float32 storage, then bf16.
        foreach (var storage in new[] { DType.F32, DType.BF16 })
        {
            yield return GptStep(dev, storage, stepB, stepT, stepModel ?? Gpt2_124M(stepT));
            // The step's model is unreachable now (GptStep's locals, not this iterator's fields): free its device copies
            // (finalizers) before the next one is built.
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        }
    }

    /// <summary>GPT-2 124M (the GPU check's model): vocabulary 50257, 12 layers, 12 heads, width 768, tied head.</summary>
    public static Gpt2Config Gpt2_124M(int seq) => new(50257, Math.Max(1024, seq), 768, 12, 12, 1e-5, null, true);

    /// <summary>A dry run's shapes (gpu/torch_bench.py --tiny has the same): matmul 256³, attention B2 T64 H2 d16, a
    /// 2-layer width-32 GPT-2 (vocabulary 97, 32 positions) stepped at B2 T32.</summary>
    public static (int Size, int AttB, int AttT, int AttNH, int AttHs, int StepB, int StepT, Gpt2Config Model) Tiny =>
        (256, 2, 64, 2, 16, 2, 32, new Gpt2Config(97, 32, 32, 2, 2, 1e-5, null, true));

    /// <summary>
    /// One GPT-2 124M training step (forward, backward, global-norm clip 1.0, AdamW) at B × T, device-resident: weights,
    /// activations, gradients and AdamW state stay on the GPU; per step the host receives the summed loss (8 bytes) and
    /// the gradient-norm partial sums. Wall clock around whole synchronized steps, median of 3 after one warm-up step.
    /// Device memory at B16 T1024, float32: logits and their gradient 2 × B·T·V·4 B ≈ 6.6 GB, the rest ≈ 10 GB (no T×T
    /// attention pattern: the training forward skips it, the backward recomputes it); the host mirrors each tensor in
    /// float32.
    /// </summary>
    static BenchResult GptStep(CudaDevice dev, DType storage, int sb, int st, Gpt2Config cfg)
    {
        using var sbe = new CudaBackend(dev, storage);
        var model = new Gpt2<float>(cfg, sbe);
        model.InitializeRandom(1);
        var opt = new Training.Optimizer<float>(model.Parameters, new Training.OptimizerConfig(), sbe);
        var rng = new Random(5);
        int[] ids = Enumerable.Range(0, sb * st).Select(_ => rng.Next(cfg.VocabSize)).ToArray();
        int[] tg = Enumerable.Range(0, sb * st).Select(_ => rng.Next(cfg.VocabSize)).ToArray();
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
        double flopsPerToken = 6.0 * nParams + 6.0 * cfg.NLayer * cfg.NEmbd * (double)st;   // llm.c / PaLM, causal attention
        double tokS = sb * (double)st / (ms / 1000);
        double tflops = flopsPerToken * tokS / 1e12;
        var (peak, peak32) = Peaks(dev.Name);
        double? mfu = peak is { } pk ? tflops / pk : null;
        string prec = storage == DType.BF16 ? "bf16" : "f32";
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string note = string.Create(inv, $"fwd+bwd+clip+AdamW; {tokS:N0} tokens/s");
        if (mfu is { } m)
        {
            note += string.Create(inv, $"; MFU {100 * m:F1}% of {peak:G} (bf16 dense)");
            if (storage == DType.F32 && peak32 is { } p32) note += string.Create(inv, $", {100 * tflops / p32:F0}% of fp32 {p32:G}");
        }
        note += string.Create(inv, $"; loss {loss:F3}");
        string label = cfg.NLayer == 12 && cfg.NEmbd == 768 ? "gpt2-124m" : "gpt2-tiny";
        return new BenchResult($"{label} train step ({prec}, resident)", $"B{sb} T{st}", ms, tflops, 0, note)
        {
            Step = new StepFigures(prec, sb, st, nParams, flopsPerToken, tokS, mfu, peak, loss),
        };
    }
}
