using System.Diagnostics;
using System.Reflection;
using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cuda;
using Xunit.Abstractions;

namespace MiniTransformer.Tests.Cuda;

/// <summary>
/// Builds tools/cuda-emu (a CPU stand-in for libcuda.so.1 that runs kernels/*.cu compiled as C++) once for the class.
/// Needs g++ and the kernel sources of this checkout; NVRTC too, since <c>mt</c> compiles every kernel before loading it.
/// </summary>
public sealed class CudaEmulator : IDisposable
{
    public string Root { get; } = FindRoot(AppContext.BaseDirectory) ?? "";
    public string Dir { get; } = Directory.CreateTempSubdirectory("mt-cuda-emu-").FullName;
    public string Driver => Path.Combine(Dir, "libcuda.so.1");

    /// <summary>Why the emulator cannot be built and run here (null when it can).</summary>
    public static string? SkipReason()
    {
        NativeLibraries.EnsureResolver();
        if (NativeLibraries.NvrtcMissingReason is { } why) return why;
        if (FindRoot(AppContext.BaseDirectory) is null) return "tools/cuda-emu/build.sh not found (neither above the test binaries nor at the recorded source root)";
        if (!OnPath("g++")) return "g++ not found: the CUDA emulator is compiled with it (apt-get install g++)";
        return null;
    }

    public CudaEmulator()
    {
        if (SkipReason() is not null) return;
        var (rc, output) = Build(Dir);
        if (rc != 0) throw new InvalidOperationException($"tools/cuda-emu/build.sh failed ({rc}):\n{output}");
    }

    /// <summary>Runs build.sh into <paramref name="outDir"/>, from <paramref name="kernelsDir"/> (default: the checkout's kernels/).</summary>
    public (int Rc, string Output) Build(string outDir, string? kernelsDir = null)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(Root, "tools", "cuda-emu", "build.sh"));
        psi.ArgumentList.Add(outDir);
        if (kernelsDir is not null) psi.Environment["MT_KERNELS_DIR"] = kernelsDir;
        return Run(psi, 300_000);
    }

    /// <summary>Runs <c>mt</c> (the mt.dll beside the tests) with the emulator as its CUDA driver.</summary>
    public (int Rc, string Output) Mt(string driver, string order, params string[] args)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath is string host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "mt.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["MT_CUDA_DRIVER"] = driver;
        psi.Environment["MT_CUDA_EMU_ORDER"] = order;
        psi.Environment["NO_COLOR"] = "1";
        return Run(psi, 600_000);
    }

    static (int, string) Run(ProcessStartInfo psi, int timeoutMs)
    {
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutMs)) { p.Kill(true); throw new TimeoutException($"{psi.FileName} {string.Join(' ', psi.ArgumentList)} ran past {timeoutMs / 1000} s"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <summary>The checkout: above the test binaries, else the source root recorded at build time.</summary>
    static string? FindRoot(string dir)
    {
        static bool Has(string d) => File.Exists(Path.Combine(d, "tools", "cuda-emu", "build.sh"));
        for (var d = new DirectoryInfo(dir); d is not null; d = d.Parent)
            if (Has(d.FullName)) return d.FullName;
        string? recorded = typeof(CudaEmulator).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "SourceRoot")?.Value;
        return recorded is not null && Has(recorded) ? recorded : null;
    }

    static bool OnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(p => p.Length > 0 && File.Exists(Path.Combine(p, exe)));

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}

/// <summary>A test that runs on the CUDA emulator: reported skipped, with the reason, where it cannot be built.</summary>
public sealed class EmulatorFactAttribute : FactAttribute
{
    public EmulatorFactAttribute() { if (CudaEmulator.SkipReason() is { } why) Skip = why; }
}

/// <summary>A theory that runs on the CUDA emulator: reported skipped, with the reason, where it cannot be built.</summary>
public sealed class EmulatorTheoryAttribute : TheoryAttribute
{
    public EmulatorTheoryAttribute() { if (CudaEmulator.SkipReason() is { } why) Skip = why; }
}

/// <summary>
/// The CUDA path end to end without a GPU: <c>mt kernels selftest</c> (every op, forward and backward, against the CPU
/// float64 reference) through the project's binding, the CudaBackend's launches and the kernels themselves, run by the
/// CPU emulator under two thread orders (each exposes a missing barrier in one direction). The emulator is shown able
/// to fail: a kernel with a barrier removed gives wrong results, and one reading past its buffers stops with a message.
/// </summary>
public sealed class CudaEmulatorTests(CudaEmulator emu, ITestOutputHelper output) : IClassFixture<CudaEmulator>
{
    [EmulatorTheory]
    [InlineData("f32", "up")]
    [InlineData("f32", "down")]
    [InlineData("bf16", "up")]
    [InlineData("bf16", "down")]
    public void EveryOpPassesItsToleranceOnTheEmulator(string dtype, string order)
    {
        var (rc, text) = emu.Mt(emu.Driver, order, "kernels", "selftest", "--dtype", dtype, "--json");
        var report = Parse(text);
        foreach (var c in report["cases"]!.AsArray())
            output.WriteLine($"{(bool)c!["passed"]! switch { true => "PASS", false => "FAIL" }} {c["op"]} {c["case"]}: {(double?)c["error"]:E2} (tol {(double)c["tolerance"]!:E0}, {c["worst"]})");
        Assert.StartsWith("MiniTransformer CPU emulator", (string)report["device"]!);
        Assert.Equal(CudaSelfTest.Cases().Count(), report["cases"]!.AsArray().Count);
        Assert.Equal(0, (int)report["failed"]!);
        Assert.Equal(0, rc);
    }

    [EmulatorTheory]
    [InlineData("--arch", "gpt2")]
    [InlineData("--gauge-fixed")]
    [InlineData("--symmetry-breaking", "bq,bv", "--optimizer", "sgdm", "--lr", "0.05")]
    [InlineData("--arch", "bert", "--mlp", "prelu")]
    public void TrainingOnTheEmulatorGivesTheCpusLosses(params string[] extra)
    {
        // mt train end to end: the same run on the CPU and on the CUDA path (emulated) must give the same losses up to
        // float32 rounding differences (different summation orders), step by step.
        double[] Losses(string device)
        {
            string run = Path.Combine(emu.Dir, $"train-{device}-{string.Join('_', extra).Replace(',', '+')}");
            string[] args = ["train", "--data", extra.Contains("bert") ? "synthetic:bio" : "synthetic:induction", "--layers", "2", "--dim", "32",
                "--heads", "2", "--steps", "6", "--eval-every", "3", "--batch", "2", "--seq", "16", "--threads", "2", "--device", device,
                "--out", run, .. extra];
            var (rc, text) = emu.Mt(emu.Driver, "up", args);
            Assert.True(rc == 0, text);
            string backend = (string)JsonNode.Parse(File.ReadAllText(Path.Combine(run, "manifest.json")))!["backend"]!;
            Assert.StartsWith(device == "cuda" ? "cuda-f32 (MiniTransformer CPU emulator" : "cpu", backend);   // no silent fallback
            return [.. File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
                .Where(o => o["loss"] is not null).Select(o => (double)o["loss"]!)];
        }
        double[] cpu = Losses("cpu"), cuda = Losses("cuda");
        output.WriteLine("cpu  " + string.Join(" ", cpu.Select(x => x.ToString("F8", System.Globalization.CultureInfo.InvariantCulture))));
        output.WriteLine("cuda " + string.Join(" ", cuda.Select(x => x.ToString("F8", System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Equal(6, cpu.Length);
        Assert.Equal(cpu.Length, cuda.Length);
        for (int i = 0; i < cpu.Length; i++) Assert.True(Math.Abs(cpu[i] - cuda[i]) < 1e-6 * Math.Abs(cpu[i]), $"step {i + 1}: cpu {cpu[i]}, cuda {cuda[i]}");
    }

    [EmulatorFact]
    public void AMissingBarrierInTheTensorCoreGemmFails()
    {
        // gemm_tc_bf16 without the barrier between writing a shared-memory stage and the warps' mma reading it: on a GPU an
        // intermittent wrong result; on the emulator ("up" order: warp 0 reads before the other warps have written) a
        // certain one wherever a tile needs data that other warps load.
        var failed = FailedBf16Cases(Mutant("matmul.cu", "        __syncthreads();   // stage written: every warp may read it\n", ""), "matmul");
        Assert.Contains(failed, name => name.StartsWith("N256 K256 M768", StringComparison.Ordinal));
        Assert.Contains(failed, name => name.StartsWith("N136 K64 M200", StringComparison.Ordinal));
    }

    [EmulatorFact]
    public void AMissingBarrierInTheTensorCoreAttentionFails()
    {
        // The bf16 tensor-core attention forward without the barrier after a key/value stage is written: the warps'
        // mma read a stage other warps have not finished writing.
        var failed = FailedBf16Cases(Mutant("attention.cu",
            "            __syncthreads();   // stage i&1 written (its readers of tile i−2 passed the barrier of tile i−1)\n", ""), "attention");
        Assert.Contains(failed, name => name.StartsWith("B3 T200 C128 NH2", StringComparison.Ordinal));
    }

    [EmulatorFact]
    public void AnOutOfBoundsReadStopsWithTheKernelBlockAndThread()
    {
        string driver = Mutant("residual.cu", "if (i < n) st(y + i, ld(a + i) + ld(b + i));", "if (i < n + 4096) st(y + i, ld(a + i) + ld(b + i));");
        var (rc, text) = emu.Mt(driver, "up", "kernels", "selftest", "--filter", "residual");
        output.WriteLine(text);
        Assert.NotEqual(0, rc);
        Assert.Matches(@"cuda-emu: kernel residual_fwd, block \(\d+,0,0\), thread \d+: invalid address", text);
    }

    [EmulatorFact]
    public void ALaunchOverTheKernelsLaunchBoundsIsRefused()
    {
        // A device refuses a block larger than the kernel's __launch_bounds__; so does the emulator, naming both.
        string driver = Mutant("matmul.cu", "__launch_bounds__(256) gemm_tc_bf16", "__launch_bounds__(128) gemm_tc_bf16");
        var (rc, text) = emu.Mt(driver, "up", "kernels", "selftest", "--dtype", "bf16", "--filter", "N7 K19 M23 InOut");
        output.WriteLine(text);
        Assert.NotEqual(0, rc);
        Assert.Contains("launch of gemm_tc_bf16 refused: 256 threads per block, over its __launch_bounds__(128)", text);
    }

    /// <summary>The bf16 self-test's cases matching <paramref name="filter"/> on a mutant driver ("up" order): the names of
    /// those that failed (the run itself must fail).</summary>
    List<string> FailedBf16Cases(string driver, string filter)
    {
        var (rc, text) = emu.Mt(driver, "up", "kernels", "selftest", "--dtype", "bf16", "--filter", filter, "--json");
        var failed = Parse(text)["cases"]!.AsArray().Where(c => !(bool)c!["passed"]!).Select(c => (string)c!["case"]!).ToList();
        output.WriteLine("failed: " + string.Join(", ", failed));
        Assert.NotEqual(0, rc);
        return failed;
    }

    /// <summary>An emulator built from a copy of kernels/ with one edit; returns its driver library.</summary>
    string Mutant(string file, string from, string to)
    {
        string dir = Path.Combine(emu.Dir, "mutant-" + Path.GetFileNameWithoutExtension(file));
        string src = Path.Combine(dir, "kernels");
        Directory.CreateDirectory(src);
        foreach (var f in Directory.GetFiles(Path.Combine(emu.Root, "kernels"))) File.Copy(f, Path.Combine(src, Path.GetFileName(f)), true);
        string path = Path.Combine(src, file), text = File.ReadAllText(path);
        Assert.Contains(from, text);   // the edit must apply, or this test checks nothing
        File.WriteAllText(path, text.Replace(from, to));
        var (rc, log) = emu.Build(Path.Combine(dir, "out"), src);
        Assert.True(rc == 0, log);
        return Path.Combine(dir, "out", "libcuda.so.1");
    }

    static JsonObject Parse(string text)
    {
        int start = text.IndexOf('{');
        Assert.True(start >= 0, "no JSON in mt's output:\n" + text);
        return JsonNode.Parse(text[start..(text.LastIndexOf('}') + 1)])!.AsObject();
    }
}
