using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace MiniTransformer.Cli;

/// <summary>Facts about this run for manifests and reports: command line, git commit, CPU, versions.</summary>
static class RunInfo
{
    public static string CommandLine => "mt " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1));

    public static string Cpu
    {
        get
        {
            try
            {
                var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
                if (line is not null) return line[(line.IndexOf(':') + 1)..].Trim();
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return RuntimeInformation.ProcessArchitecture.ToString();
        }
    }

    public static string GitCommit
    {
        get
        {
            try
            {
                var psi = new ProcessStartInfo("git", "rev-parse --short HEAD")
                { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Environment.CurrentDirectory };
                using var p = Process.Start(psi)!;
                string s = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit(2000);
                return p.ExitCode == 0 && s.Length > 0 ? s : "unknown";
            }
            catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException) { return "unknown"; }
        }
    }

    public static JsonObject Manifest(int seed, int threads, JsonObject extra)
    {
        var o = new JsonObject
        {
            ["command"] = CommandLine,
            ["seed"] = seed,
            ["git_commit"] = GitCommit,
            ["cpu"] = Cpu,
            ["cores"] = Environment.ProcessorCount,
            ["threads"] = threads,
            ["dotnet"] = RuntimeInformation.FrameworkDescription,
            ["os"] = RuntimeInformation.OSDescription,
            ["mt_version"] = typeof(RunInfo).Assembly.GetName().Version?.ToString(),
            ["vector512"] = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated,
            ["started_utc"] = DateTime.UtcNow.ToString("o"),
        };
        foreach (var (k, v) in extra) o[k] = v?.DeepClone();
        return o;
    }
}
