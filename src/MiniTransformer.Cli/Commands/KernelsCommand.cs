using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cuda;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt kernels compile [--arch sm_XY]</c>: compiles every <c>kernels/*.cu</c> through NVRTC (no GPU needed) and reports
/// each; <c>mt kernels selftest</c>: every op on the GPU against the CPU float64 reference; <c>mt kernels bench</c>:
/// kernel timings on device buffers; <c>mt kernels info</c>: what was found (NVRTC, driver, device).
/// </summary>
static class KernelsCommand
{
    public static Command Create()
    {
        var cmd = new Command("kernels", "CUDA kernels: compile them (NVRTC, no GPU needed), test them against the CPU, time them.");
        cmd.Subcommands.Add(Compile());
        cmd.Subcommands.Add(SelfTest());
        cmd.Subcommands.Add(Bench());
        cmd.Subcommands.Add(Info());
        return cmd;
    }

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    static Command Compile()
    {
        var arch = new Option<string[]>("--arch") { Description = "target(s), e.g. sm_80 sm_90 (default: the GPU's own, else sm_80 and sm_90)", AllowMultipleArgumentsPerToken = true };
        var noCache = new Option<bool>("--no-cache") { Description = "compile even when the on-disk cache has the result" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var c = new Command("compile", "Compile every kernel file with NVRTC and report each (fails on any error or warning).");
        foreach (Option o in new Option[] { arch, noCache, json }) c.Options.Add(o);
        c.SetAction(r =>
        {
            string version = Nvrtc(() => KernelCompiler.NvrtcVersion());
            string[] archs = r.GetValue(arch) is { Length: > 0 } a ? a
                : CudaDevice.Unavailable() is null ? [CudaDevice.Default.Arch] : ["sm_80", "sm_90"];
            var supported = KernelCompiler.SupportedArchs();
            foreach (string x in archs)
                if (!supported.Contains(KernelCompiler.ArchNumber(x)))
                    throw new InputException($"--arch {x}: NVRTC {version} does not support it (it supports {string.Join(", ", supported.Select(s => "sm_" + s))})");
            bool asJson = r.GetValue(json);
            if (!asJson) Console.WriteLine($"NVRTC {version} ({NativeLibraries.NvrtcLibrary}); cache {KernelCompiler.CacheDir}");
            var rows = new JsonArray();
            int bad = 0;
            foreach (string x in archs)
                foreach (string f in KernelCompiler.Variants())   // each file, and file#bf16 (its bf16-storage build)
                {
                    string status;
                    CompiledKernel? k = null;
                    try
                    {
                        k = KernelCompiler.CompileVariant(f, x, useCache: !r.GetValue(noCache));
                        status = KernelCompiler.LogHasWarnings(k.Log) ? "warnings" : "ok";
                    }
                    catch (CudaException e) { status = "error"; Console.Error.WriteLine(e.Message); }
                    if (status != "ok") bad++;
                    if (k is not null && status == "warnings") Console.Error.WriteLine($"{f} ({x}):\n{k.Log}");
                    rows.Add(new JsonObject
                    {
                        ["file"] = f, ["arch"] = x, ["status"] = status, ["ptx_bytes"] = k?.Ptx.Length ?? 0,
                        ["cubin_bytes"] = k?.Cubin?.Length ?? 0, ["cached"] = k?.FromCache ?? false,
                        ["ms"] = Math.Round(k?.Elapsed.TotalMilliseconds ?? 0, 1),
                    });
                    if (!asJson)
                        Console.WriteLine($"  {f,-23} {x,-6} {status,-8} PTX {k?.Ptx.Length ?? 0,7} B  CUBIN {k?.Cubin?.Length ?? 0,7} B  " +
                                          $"{(k?.FromCache == true ? "cached" : $"{k?.Elapsed.TotalMilliseconds ?? 0:F0} ms")}");
                }
            if (asJson)
                Console.WriteLine(new JsonObject { ["nvrtc"] = version, ["kernels"] = rows, ["failed"] = bad }.ToJsonString(Indented));
            else
                Console.WriteLine(bad == 0 ? $"all {rows.Count} compiled cleanly" : $"{bad} of {rows.Count} failed or warned");
            return bad == 0 ? 0 : 1;
        });
        return c;
    }

    static Command SelfTest()
    {
        var filter = new Option<string?>("--filter") { Description = "only cases whose name contains this text" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var dtype = new Option<string>("--dtype") { Description = "device storage: f32 or bf16 (float32 arithmetic either way)", DefaultValueFactory = _ => "f32" };
        var c = new Command("selftest", "Every op, forward and backward, on the GPU (f32 or bf16 storage) against the CPU in float64.");
        foreach (Option o in new Option[] { filter, json, dtype }) c.Options.Add(o);
        c.SetAction(r =>
        {
            var storage = StorageOf(r.GetValue(dtype)!);
            var dev = CudaDevice.Default;
            using var be = new CudaBackend(dev, storage);
            string? f = r.GetValue(filter);
            bool asJson = r.GetValue(json);
            bool bf = storage == MiniTransformer.Tensors.DType.BF16;
            if (!asJson)
                Console.WriteLine($"{dev}; {be.Name}; tolerance {CudaSelfTest.ToleranceFor("op", bf):E0} (whole-model cases {CudaSelfTest.ToleranceFor("gpt2", bf):E0})");
            var results = CudaSelfTest.Run(be, f is null ? null : n => n.Contains(f, StringComparison.Ordinal), res =>
            {
                if (!asJson)
                    Console.WriteLine($"  {(res.Passed ? "PASS" : "FAIL")}  {res.Op,-12} {res.Case,-36} {res.Error,10:E2}  {res.Worst,-14} {res.Ms,8:F1} ms");
            });
            int failed = results.Count(x => !x.Passed);
            if (asJson)
                Console.WriteLine(new JsonObject
                {
                    ["device"] = dev.ToString(),
                    ["storage"] = bf ? "bf16" : "f32",
                    ["cases"] = new JsonArray(results.Select(x => (JsonNode)new JsonObject
                    {
                        ["op"] = x.Op, ["case"] = x.Case, ["error"] = double.IsNaN(x.Error) ? null : x.Error, ["tolerance"] = x.Tolerance,
                        ["worst"] = x.Worst, ["passed"] = x.Passed, ["ms"] = Math.Round(x.Ms, 2),
                    }).ToArray()),
                    ["failed"] = failed,
                }.ToJsonString(Indented));
            else Console.WriteLine($"{results.Count - failed} passed, {failed} failed");
            return failed == 0 ? 0 : 1;
        });
        return c;
    }

    /// <summary>--dtype of the kernels commands: the CUDA backend's storage type.</summary>
    static MiniTransformer.Tensors.DType StorageOf(string dtype) => dtype switch
    {
        "f32" or "float32" => MiniTransformer.Tensors.DType.F32,
        "bf16" or "bfloat16" => MiniTransformer.Tensors.DType.BF16,
        _ => throw new InputException($"--dtype: unknown storage '{dtype}'; expected f32 or bf16"),
    };

    static Command Bench()
    {
        var size = new Option<int>("--size") { Description = "matmul M = N = K (a multiple of 128)", DefaultValueFactory = _ => 4096 };
        var batch = new Option<int>("--batch") { Description = "B of the GPT-2 124M training step", DefaultValueFactory = _ => 16 };
        var seq = new Option<int>("--seq") { Description = "T of the GPT-2 124M training step (at most 1024)", DefaultValueFactory = _ => 1024 };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var tiny = new Option<bool>("--tiny") { Description = "tiny shapes and a 2-layer GPT-2 (a dry run of the GPU check, e.g. on tools/cuda-emu)" };
        var c = new Command("bench", "Time matmul (f32, bf16 tensor cores), attention and a GPT-2 124M training step (B×T 16×1024, "
            + "f32 and bf16 storage; tokens/s and MFU) on the GPU.");
        foreach (Option o in new Option[] { size, batch, seq, json, tiny }) c.Options.Add(o);
        c.SetAction(r =>
        {
            int n = r.GetValue(size), bs = r.GetValue(batch), t = r.GetValue(seq);
            if (n <= 0 || n % 128 != 0) throw new InputException($"--size: must be a positive multiple of 128 (got {n})");
            if (bs <= 0) throw new InputException($"--batch: must be positive (got {bs})");
            if (t <= 0 || t > 1024) throw new InputException($"--seq: must be in 1..1024, GPT-2's context (got {t})");
            var dev = CudaDevice.Default;
            bool asJson = r.GetValue(json);
            var rows = new JsonArray();
            if (!asJson) Console.WriteLine(dev);
            var runs = r.GetValue(tiny) && KernelBench.Tiny is var z
                ? KernelBench.Run(dev, z.Size, z.AttB, z.AttT, z.AttNH, z.AttHs, z.StepB, z.StepT, z.Model)
                : KernelBench.Run(dev, n, stepB: bs, stepT: t);
            foreach (var b in runs)
            {
                var row = new JsonObject
                {
                    ["name"] = b.Name, ["shape"] = b.Shape, ["ms"] = Math.Round(b.Ms, 4), ["tflops"] = Math.Round(b.Tflops, 2),
                    ["rel_error"] = Finite(b.RelError), ["note"] = b.Note,
                };
                if (b.Step is { } s)   // the fields gpu/table.py pairs with PyTorch's step (same names as torch_bench.py)
                {
                    row["kind"] = "gpt2_step"; row["precision"] = s.Precision; row["batch"] = s.Batch; row["seq"] = s.Seq;
                    row["tokens_per_s"] = Math.Round(s.TokensPerS, 1); row["mfu"] = s.Mfu; row["peak_tflops"] = s.PeakTflops;
                    row["n_params"] = s.NParams; row["flops_per_token"] = s.FlopsPerToken; row["loss"] = Finite(s.Loss);
                }
                rows.Add(row);
                if (!asJson) Console.WriteLine($"  {b.Name,-34} {b.Shape,-26} {b.Ms,10:F3} ms {b.Tflops,8:F1} TFLOP/s  {b.Note}");
            }
            if (asJson) Console.WriteLine(new JsonObject { ["device"] = dev.ToString(), ["results"] = rows }.ToJsonString(Indented));
            return 0;
        });
        return c;
    }

    /// <summary>JSON has no NaN or infinity: a diverged loss or a broken kernel's error is written as null.</summary>
    static double? Finite(double x) => double.IsFinite(x) ? x : null;

    static Command Info()
    {
        var c = new Command("info", "Show what the CUDA path finds: NVRTC library and version, driver, device.");
        c.SetAction(_ =>
        {
            NativeLibraries.EnsureResolver();
            Console.WriteLine(NativeLibraries.NvrtcMissingReason is { } nr ? $"nvrtc:  {nr}"
                : $"nvrtc:  {NativeLibraries.NvrtcLibrary}, version {KernelCompiler.NvrtcVersion()}, archs {string.Join(" ", KernelCompiler.SupportedArchs())}");
            Console.WriteLine(CudaDevice.Unavailable() is { } why ? $"device: {why}" : $"device: {CudaDevice.Default}");
            Console.WriteLine($"cache:  {KernelCompiler.CacheDir}");
            return 0;
        });
        return c;
    }

    static T Nvrtc<T>(Func<T> f)
    {
        try { return f(); }
        catch (CudaException e) { throw new InputException($"mt kernels: {e.Message}"); }
    }
}
