using MiniTransformer.Backends.Cuda;
using Xunit.Abstractions;

namespace MiniTransformer.Tests.Cuda;

/// <summary>
/// Every kernel file compiles through the project's own NVRTC binding, for sm_80 (A100) and sm_90 (H100/H200), with no
/// error and no warning. Needs NVRTC only (CI installs Debian's libnvrtc11.2); skipped, with the reason, without it.
/// </summary>
public class KernelCompileTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (string f in KernelCompiler.Variants())   // every file, and file#bf16 for those with a bf16-storage build
            foreach (string a in new[] { "sm_80", "sm_90" }) d.Add(f, a);
        return d;
    }

    [Fact]
    public void EveryOpFamilyHasAKernelFile()
    {
        var files = KernelCompiler.Files();
        foreach (string f in new[] { "embedding.cu", "layernorm.cu", "matmul.cu", "attention.cu", "gelu.cu", "residual.cu",
                     "crossentropy.cu", "adamw.cu", "global_norm.cu" })
            Assert.Contains(f, files);
        // bf16 storage: every op family but the optimizer and the norm (which read bf16 directly) has a bf16 build
        foreach (string f in new[] { "embedding.cu", "layernorm.cu", "matmul.cu", "attention.cu", "gelu.cu", "residual.cu", "crossentropy.cu" })
            Assert.Contains(f + KernelCompiler.Bf16Suffix, KernelCompiler.Variants());
        Assert.Contains("#pragma once", KernelCompiler.Source(KernelCompiler.Header));
        foreach (string f in files)
            Assert.DoesNotContain("#include <", KernelCompiler.Source(f));   // no CUDA headers: NVRTC alone
    }

    [NvrtcTheory]
    [MemberData(nameof(Cases))]
    public void KernelCompilesWithoutWarnings(string file, string arch)
    {
        output.WriteLine($"NVRTC {KernelCompiler.NvrtcVersion()} ({NativeLibraries.NvrtcLibrary})");
        var k = KernelCompiler.CompileVariant(file, arch, useCache: false);
        output.WriteLine($"{file} {arch}: PTX {k.Ptx.Length} B, CUBIN {k.Cubin?.Length ?? 0} B, {k.Elapsed.TotalMilliseconds:F0} ms");
        if (k.Log.Length > 0) output.WriteLine(k.Log);
        Assert.False(KernelCompiler.LogHasWarnings(k.Log), $"{file} ({arch}) compiled with warnings:\n{k.Log}");
        Assert.NotNull(k.Cubin);
        if (file is "matmul.cu" or "matmul.cu#bf16" or "attention.cu#bf16")   // the tensor-core paths really are there for sm_80+ (GEMMs; bf16 attention)
            Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", System.Text.Encoding.UTF8.GetString(k.Ptx));
    }

    /// <summary>
    /// Every kernel the backend and the benchmarks launch exists under that name in the build it is launched from (a
    /// misspelt name would only fail on the GPU, at cuModuleGetFunction): the names are read from the C# sources (the
    /// string literals of each <c>Op("file.cu", …)</c> / <c>Launch("file.cu", …)</c> call up to its grid argument)
    /// and looked up among the PTX entries; an Op kernel must exist as <c>name</c> in the float32 build and as
    /// <c>name_bf16</c> in the bf16 build, whose every entry carries the suffix (but the storage-independent loss_sum).
    /// </summary>
    [NvrtcTheory]
    [InlineData("sm_80")]
    public void EveryLaunchedKernelNameExistsInItsBuild(string arch)
    {
        string dir = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(ThisFile())!, "../../../src/MiniTransformer/Backends/Cuda"));
        var entries = new Dictionary<string, HashSet<string>>();
        HashSet<string> Entries(string variant)
        {
            if (entries.TryGetValue(variant, out var e)) return e;
            string ptx = System.Text.Encoding.UTF8.GetString(KernelCompiler.CompileVariant(variant, arch).Ptx);
            e = [.. System.Text.RegularExpressions.Regex.Matches(ptx, @"\.entry\s+([A-Za-z_0-9]+)\(").Select(m => m.Groups[1].Value)];
            return entries[variant] = e;
        }
        int checkedNames = 0;
        foreach (string src in new[] { "CudaBackend.cs", "KernelBench.cs" })
        {
            string text = File.ReadAllText(Path.Combine(dir, src));
            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(text,
                         @"\b(Op|Launch)\(""([a-z_]+\.cu(?:#bf16)?)"",(.*?)\bG?\(", System.Text.RegularExpressions.RegexOptions.Singleline))
            {
                bool op = m.Groups[1].Value == "Op";
                string file = m.Groups[2].Value;
                var names = System.Text.RegularExpressions.Regex.Matches(m.Groups[3].Value, @"""([a-z_0-9]+)""").Select(n => n.Groups[1].Value).ToList();
                Assert.True(names.Count > 0, $"{src}: no kernel name in {m.Value}");
                foreach (string n in names)
                {
                    Assert.True(Entries(file).Contains(n), $"{src}: {file} has no kernel '{n}' (entries: {string.Join(", ", Entries(file))})");
                    if (op) Assert.True(Entries(file + KernelCompiler.Bf16Suffix).Contains(n + "_bf16"), $"{src}: {file}#bf16 has no kernel '{n}_bf16'");
                    checkedNames++;
                }
            }
        }
        output.WriteLine($"{checkedNames} launched kernel names found in their builds");
        Assert.True(checkedNames > 30, $"only {checkedNames} launches found: the pattern no longer matches the sources");
        foreach (string v in KernelCompiler.Variants().Where(v => v.EndsWith(KernelCompiler.Bf16Suffix, StringComparison.Ordinal)))
            foreach (string e in Entries(v))
                Assert.True(e.EndsWith("_bf16", StringComparison.Ordinal) || e == "loss_sum", $"{v}: kernel '{e}' lacks the _bf16 suffix (KNAME)");
    }

    static string ThisFile([System.Runtime.CompilerServices.CallerFilePath] string path = "") => path;

    [NvrtcTheory]
    [InlineData("sm_80")]
    public void CacheKeyChangesWithSourceOptionsArchAndVersion(string arch)
    {
        string a = KernelCompiler.CacheKey("x.cu", "src", "hdr", ["-O3"], arch, "11.8");
        Assert.NotEqual(a, KernelCompiler.CacheKey("x.cu", "src2", "hdr", ["-O3"], arch, "11.8"));
        Assert.NotEqual(a, KernelCompiler.CacheKey("x.cu", "src", "hdr2", ["-O3"], arch, "11.8"));
        Assert.NotEqual(a, KernelCompiler.CacheKey("x.cu", "src", "hdr", ["-O2"], arch, "11.8"));
        Assert.NotEqual(a, KernelCompiler.CacheKey("x.cu", "src", "hdr", ["-O3"], "sm_90", "11.8"));
        Assert.NotEqual(a, KernelCompiler.CacheKey("x.cu", "src", "hdr", ["-O3"], arch, "12.0"));
        // A second compile with the cache on is served from the cache.
        string dir = Path.Combine(Path.GetTempPath(), "mt-kcache-" + Guid.NewGuid().ToString("N"));
        Environment.SetEnvironmentVariable("MT_KERNEL_CACHE", dir);
        try
        {
            var first = KernelCompiler.Compile("residual.cu", arch);
            var second = KernelCompiler.Compile("residual.cu", arch);
            Assert.False(first.FromCache);
            Assert.True(second.FromCache);
            Assert.Equal(first.Ptx, second.Ptx);
            Assert.Equal(first.Cubin, second.Cubin);
        }
        finally
        {
            Environment.SetEnvironmentVariable("MT_KERNEL_CACHE", null);
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}
