using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Training;
using Xunit.Abstractions;

namespace MiniTransformer.Tests.Robustness;

/// <summary>
/// Real processes: <c>mt train</c> started as a child (the mt.dll built beside the tests), killed with SIGKILL at chosen and
/// random moments — in the middle of a checkpoint write, in the rename window, between checkpoints — then resumed with
/// <c>--resume</c> and the same flags until it finishes. The losses and the final weights must equal an uninterrupted run's
/// bit for bit, metrics.jsonl must list every step exactly once, and after every kill the last checkpoint must load.
/// Two uninterrupted runs of the same command must also agree bit for bit (determinism at the command line).
/// </summary>
public sealed class KillAndResumeTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-kill-").FullName;
    readonly ITestOutputHelper log;

    public KillAndResumeTests(ITestOutputHelper log) => this.log = log;

    public void Dispose()
    {
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    static readonly string[] TrainArgs =
        ["train", "--data", "synthetic:induction", "--layers", "1", "--dim", "16", "--heads", "2", "--steps", "12", "--eval-every", "3",
         "--batch", "2", "--seq", "16", "--lr", "3e-3", "--threads", "2", "--seed", "11"];

    static string MtDll
    {
        get
        {
            string dll = Path.Combine(AppContext.BaseDirectory, "mt.dll");
            Assert.True(File.Exists(dll), $"{dll} is missing: the test project references the CLI project, so its build output should be copied here");
            return dll;
        }
    }

    static Process Start(string runDir, bool resume, int slowCheckpointMs)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath is string host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(MtDll);
        foreach (var a in TrainArgs) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--out");
        psi.ArgumentList.Add(runDir);
        if (resume) psi.ArgumentList.Add("--resume");
        psi.Environment["MT_TEST_SLOW_CHECKPOINT_MS"] = slowCheckpointMs.ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["NO_COLOR"] = "1";
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    static void RunToEnd(string runDir, bool resume = false)
    {
        using var p = Start(runDir, resume, 0);
        Assert.True(p.WaitForExit(120_000), "mt train did not finish");
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>metrics.jsonl as (step, kind, exact value) in file order.</summary>
    static List<(int Step, string Kind, double Value)> Metrics(string runDir)
    {
        var list = new List<(int, string, double)>();
        foreach (var line in File.ReadAllLines(Path.Combine(runDir, Trainer<float>.MetricsFile)))
        {
            var o = JsonNode.Parse(line)!.AsObject();
            int step = (int)o["step"]!;
            if (o["loss"] is JsonNode l) list.Add((step, "loss", (double)l));
            if (o["grad_norm"] is JsonNode g) list.Add((step, "grad_norm", (double)g));
            if (o["val_loss"] is JsonNode v) list.Add((step, "val_loss", (double)v));
        }
        return list;
    }

    static Dictionary<string, byte[]> Weights(string runDir) =>
        SafeTensors.Read(Path.Combine(runDir, Trainer<float>.CheckpointDir, ModelFiles.WeightsFile)).Tensors.ToDictionary(t => t.Name, t => t.Bytes);

    static int MetricsLines(string runDir)
    {
        try
        {
            using var fs = new FileStream(Path.Combine(runDir, Trainer<float>.MetricsFile), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var r = new StreamReader(fs);
            return r.ReadToEnd().Count(c => c == '\n');
        }
        catch (IOException) { return 0; }
    }

    [Fact]
    public async Task KilledAtRandomMomentsAndResumedMatchesAnUninterruptedRunBitForBit()
    {
        string reference = Path.Combine(dir, "reference"), again = Path.Combine(dir, "again"), killed = Path.Combine(dir, "killed");
        // Two uninterrupted runs (in parallel with the kill chain below; the numbers do not depend on timing).
        var refTask = Task.Run(() => RunToEnd(reference));
        var againTask = Task.Run(() => RunToEnd(again));

        var rng = new Random(Environment.TickCount);
        int linesAtStart = 0;
        // (what to wait for, extra random delay): mid-write of a later checkpoint, the rename window, between checkpoints, any time.
        var plans = new (string Name, Func<bool> When, int MaxExtraMs)[]
        {
            ("mid checkpoint write", (Func<bool>)(() => Directory.Exists(Path.Combine(killed, "checkpoint.tmp")) && Directory.Exists(Path.Combine(killed, "checkpoint"))), 150),
            ("rename window", (Func<bool>)(() => Directory.Exists(Path.Combine(killed, "checkpoint.old"))), 20),
            ("between checkpoints", (Func<bool>)(() => MetricsLines(killed) > linesAtStart + 2 && !Directory.Exists(Path.Combine(killed, "checkpoint.tmp"))), 10),
            ("random moment", (Func<bool>)(() => true), 1500),
            ("first checkpoint write", (Func<bool>)(() => Directory.Exists(Path.Combine(killed, "checkpoint.tmp"))), 150),
        };
        int kills = 0;
        foreach (var (name, when, maxExtra) in plans)
        {
            bool resume = Trainer<float>.FindCheckpoint(killed) is not null;
            linesAtStart = resume ? MetricsLines(killed) : 0;
            using var p = Start(killed, resume, slowCheckpointMs: 60);
            var sw = Stopwatch.StartNew();
            while (!p.HasExited && !when() && sw.ElapsedMilliseconds < 60_000) Thread.Sleep(2);
            int extra = rng.Next(maxExtra + 1);
            if (!p.HasExited) Thread.Sleep(extra);
            bool finished = p.HasExited;
            if (!finished) { p.Kill(entireProcessTree: true); kills++; }
            p.WaitForExit();
            log.WriteLine($"{name}: {(finished ? "finished before the kill" : $"killed {sw.ElapsedMilliseconds} ms after start (+{extra} ms)")}; "
                + $"checkpoint now {Trainer<float>.FindCheckpoint(killed) ?? "none"}");
            // Whatever the moment, a checkpoint that exists is complete and loads.
            if (Trainer<float>.FindCheckpoint(killed) is string ck)
            {
                var model = ModelFiles.LoadGpt2(ck, CpuBackend<float>.Instance);
                var state = SafeTensors.Read(Path.Combine(ck, "trainer_state.safetensors"));
                Assert.True(int.Parse(state.Metadata["step"], System.Globalization.CultureInfo.InvariantCulture) % 3 == 0);
                Assert.Equal(model.Parameters.Count * 2, state.Tensors.Count);
            }
            if (finished) break;
        }
        Assert.True(kills >= 3, $"only {kills} kills landed");
        RunToEnd(killed, resume: Trainer<float>.FindCheckpoint(killed) is not null);
        await refTask;
        await againTask;

        var expected = Metrics(reference);
        Assert.Equal(12 * 2 + 4, expected.Count);                       // loss + grad norm per step, val loss at 3, 6, 9, 12
        Assert.Equal(expected, Metrics(again));                         // determinism: same command, same numbers
        Assert.Equal(expected, Metrics(killed));                        // each step once, every value bit-identical
        var w = Weights(reference);
        Assert.Equal(w, Weights(again));
        Assert.Equal(w, Weights(killed));
    }
}
