using System.Reflection;
using System.Security.Cryptography;
using System.Text;

namespace MiniTransformer.Backends.Cuda;

/// <summary>One kernel file's compilation: the PTX (always), the CUBIN (when compiled for a real sm_XY), the log.</summary>
public sealed record CompiledKernel(string File, string Arch, byte[] Ptx, byte[]? Cubin, string Log, bool FromCache,
    TimeSpan Elapsed, string Key);

/// <summary>
/// The kernel sources (<c>kernels/*.cu</c>, embedded in the assembly; <c>MT_KERNELS_DIR</c> points at a folder to
/// use instead while editing them) and their compilation through NVRTC, cached on disk by SHA-256 of source + headers +
/// options + architecture + NVRTC version (<c>MT_KERNEL_CACHE</c>, default <c>$XDG_CACHE_HOME/mt/kernels</c> or
/// <c>~/.cache/mt/kernels</c>).
/// </summary>
public static class KernelCompiler
{
    /// <summary>The shared header every kernel file includes (passed to NVRTC in memory: no include path).</summary>
    public const string Header = "common.cuh";

    /// <summary>Options for every compile; the architecture is added per call.</summary>
    public static readonly string[] BaseOptions = ["--std=c++17"];

    static string? SourceDir => Environment.GetEnvironmentVariable("MT_KERNELS_DIR") is { Length: > 0 } d ? d : null;

    /// <summary>Names of the kernel files (<c>*.cu</c>), sorted.</summary>
    public static IReadOnlyList<string> Files()
    {
        if (SourceDir is { } dir)
            return Directory.GetFiles(dir, "*.cu").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList()!;
        return typeof(KernelCompiler).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith("kernels/", StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
            .Select(n => n["kernels/".Length..]).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>The define that selects bf16 storage in the op kernels (common.cuh's <c>stor_t</c> and <c>KNAME</c>).</summary>
    public const string Bf16Define = "-DMT_BF16";
    /// <summary>Suffix naming a file's bf16-storage build: <c>matmul.cu#bf16</c> is matmul.cu compiled with <see cref="Bf16Define"/>.</summary>
    public const string Bf16Suffix = "#bf16";

    /// <summary>Whether a kernel file has a bf16-storage build (its kernels are named through <c>KNAME</c>).</summary>
    public static bool HasBf16Variant(string file) => Source(file).Contains("KNAME(", StringComparison.Ordinal);

    /// <summary>Every build to compile: each file, and <c>file#bf16</c> for the files with a bf16-storage build.</summary>
    public static IReadOnlyList<string> Variants() =>
        [.. Files().SelectMany(f => HasBf16Variant(f) ? new[] { f, f + Bf16Suffix } : [f])];

    /// <summary><see cref="Compile"/> of a file or of its bf16 build (<c>file#bf16</c>).</summary>
    public static CompiledKernel CompileVariant(string variant, string arch, bool useCache = true) =>
        variant.EndsWith(Bf16Suffix, StringComparison.Ordinal)
            ? Compile(variant[..^Bf16Suffix.Length], arch, useCache, [Bf16Define])
            : Compile(variant, arch, useCache);

    public static string Source(string file)
    {
        if (SourceDir is { } dir) return File.ReadAllText(Path.Combine(dir, file));
        using var s = typeof(KernelCompiler).Assembly.GetManifestResourceStream("kernels/" + file)
            ?? throw new CudaException($"kernel source '{file}' is not embedded in {typeof(KernelCompiler).Assembly.GetName().Name}");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    public static string CacheDir
    {
        get
        {
            if (Environment.GetEnvironmentVariable("MT_KERNEL_CACHE") is { Length: > 0 } c) return c;
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string root = !string.IsNullOrEmpty(xdg) ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "mt", "kernels");
        }
    }

    /// <summary>The NVRTC version as "major.minor"; throws a one-line CudaException when NVRTC is missing.</summary>
    public static string NvrtcVersion()
    {
        NativeLibraries.EnsureResolver();
        if (NativeLibraries.NvrtcMissingReason is { } why) throw new CudaException(why);
        Nvrtc.Check(Nvrtc.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
        return $"{major}.{minor}";
    }

    /// <summary>The architectures this NVRTC can target (e.g. 52, 53, …, 90).</summary>
    public static unsafe int[] SupportedArchs()
    {
        NvrtcVersion();
        Nvrtc.Check(Nvrtc.nvrtcGetNumSupportedArchs(out int n), "nvrtcGetNumSupportedArchs");
        var a = new int[n];
        fixed (int* p = a) Nvrtc.Check(Nvrtc.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return a;
    }

    /// <summary>"sm_90" → 90; accepts sm_XY, sm_XYa, compute_XY.</summary>
    public static int ArchNumber(string arch)
    {
        string s = arch.StartsWith("sm_", StringComparison.Ordinal) ? arch[3..]
            : arch.StartsWith("compute_", StringComparison.Ordinal) ? arch[8..] : arch;
        s = s.TrimEnd('a', 'f');
        return int.TryParse(s, out int v) ? v : throw new InputException($"--arch: '{arch}' is not an architecture like sm_80 or sm_90");
    }

    public static string CacheKey(string file, string source, string headerSource, IReadOnlyList<string> options, string arch, string nvrtc)
    {
        var sb = new StringBuilder();
        sb.Append(file).Append('\0').Append(source).Append('\0').Append(headerSource).Append('\0')
          .Append(string.Join('\u0001', options)).Append('\0').Append(arch).Append('\0').Append(nvrtc);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())))[..32];
    }

    /// <summary>
    /// Compiles one kernel file for <paramref name="arch"/> (sm_XY: PTX + CUBIN; compute_XY: PTX only). Throws a
    /// <see cref="CudaException"/> carrying the compile log on failure. Uses and fills the on-disk cache unless
    /// <paramref name="useCache"/> is false.
    /// </summary>
    public static unsafe CompiledKernel Compile(string file, string arch, bool useCache = true, IEnumerable<string>? extraOptions = null)
    {
        string nvrtc = NvrtcVersion();
        string src = Source(file), hdr = Source(Header);
        var options = new List<string>(BaseOptions) { $"--gpu-architecture={arch}" };
        if (extraOptions is not null) options.AddRange(extraOptions);
        string key = CacheKey(file, src, hdr, options, arch, nvrtc);
        string stem = Path.Combine(CacheDir, $"{Path.GetFileNameWithoutExtension(file)}-{arch}-{key}");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        if (useCache && File.Exists(stem + ".ptx"))
        {
            try
            {
                byte[] ptx = File.ReadAllBytes(stem + ".ptx");
                byte[]? cub = File.Exists(stem + ".cubin") ? File.ReadAllBytes(stem + ".cubin") : null;
                string log = File.Exists(stem + ".log") ? File.ReadAllText(stem + ".log") : "";
                return new CompiledKernel(file, arch, ptx, cub, log, true, sw.Elapsed, key);
            }
            catch (IOException) { /* fall through and recompile */ }
        }

        IntPtr prog = IntPtr.Zero;
        var pinned = new List<IntPtr>();
        byte* Utf8(string s)
        {
            var b = Encoding.UTF8.GetBytes(s + "\0");
            IntPtr p = System.Runtime.InteropServices.Marshal.AllocHGlobal(b.Length);
            System.Runtime.InteropServices.Marshal.Copy(b, 0, p, b.Length);
            pinned.Add(p);
            return (byte*)p;
        }
        try
        {
            byte** headers = stackalloc byte*[1];
            byte** names = stackalloc byte*[1];
            headers[0] = Utf8(hdr);
            names[0] = Utf8(Header);
            Nvrtc.Check(Nvrtc.nvrtcCreateProgram(out prog, Utf8(src), Utf8(file), 1, headers, names), $"nvrtcCreateProgram({file})");
            byte** opts = stackalloc byte*[options.Count];
            for (int i = 0; i < options.Count; i++) opts[i] = Utf8(options[i]);
            int rc = Nvrtc.nvrtcCompileProgram(prog, options.Count, opts);
            Nvrtc.Check(Nvrtc.nvrtcGetProgramLogSize(prog, out nuint logSize), "nvrtcGetProgramLogSize");
            var logBytes = new byte[(int)logSize];
            fixed (byte* lp = logBytes) Nvrtc.Check(Nvrtc.nvrtcGetProgramLog(prog, lp), "nvrtcGetProgramLog");
            string log = Encoding.UTF8.GetString(logBytes).TrimEnd('\0').Trim();
            if (rc != 0)
                throw new CudaException($"nvrtcCompileProgram({file}, {arch}) failed: {Nvrtc.ErrorText(rc)}\n{log}");

            byte[] ptxOut = [];
            if (Nvrtc.nvrtcGetPTXSize(prog, out nuint ptxSize) == 0 && ptxSize > 0)
            {
                ptxOut = new byte[(int)ptxSize];
                fixed (byte* pp = ptxOut) Nvrtc.Check(Nvrtc.nvrtcGetPTX(prog, pp), "nvrtcGetPTX");
            }
            byte[]? cubin = null;
            if (arch.StartsWith("sm_", StringComparison.Ordinal)
                && Nvrtc.nvrtcGetCUBINSize(prog, out nuint cubSize) == 0 && cubSize > 0)
            {
                cubin = new byte[(int)cubSize];
                fixed (byte* cp = cubin) Nvrtc.Check(Nvrtc.nvrtcGetCUBIN(prog, cp), "nvrtcGetCUBIN");
            }
            if (ptxOut.Length == 0 && cubin is null)
                throw new CudaException($"nvrtc produced neither PTX nor CUBIN for {file} ({arch})");

            if (useCache)
            {
                try
                {
                    Directory.CreateDirectory(CacheDir);
                    WriteAtomic(stem + ".log", Encoding.UTF8.GetBytes(log));
                    if (cubin is not null) WriteAtomic(stem + ".cubin", cubin);
                    WriteAtomic(stem + ".ptx", ptxOut);   // last: its presence marks a complete entry
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* a read-only cache is not an error */ }
            }
            return new CompiledKernel(file, arch, ptxOut, cubin, log, false, sw.Elapsed, key);
        }
        finally
        {
            if (prog != IntPtr.Zero) Nvrtc.nvrtcDestroyProgram(ref prog);
            foreach (var p in pinned) System.Runtime.InteropServices.Marshal.FreeHGlobal(p);
        }
    }

    static void WriteAtomic(string path, byte[] bytes)
    {
        string tmp = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>True when a compile log holds a warning or an error line.</summary>
    public static bool LogHasWarnings(string log) =>
        log.Split('\n').Any(l => l.Contains("warning", StringComparison.OrdinalIgnoreCase) || l.Contains("error", StringComparison.OrdinalIgnoreCase));
}
