using System.Buffers.Binary;
using System.Text;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Backends.Cpu;

namespace MiniTransformer.Tests.Robustness;

/// <summary>Runs <c>mt</c> in-process (stdout and stderr captured) and checks the bad-input contract.</summary>
static class CliHarness
{
    public sealed record Outcome(int Code, string Err, string Out, long AllocatedBytes);

    public static Outcome Run(params string[] args)
    {
        var err = new StringWriter();
        var output = new StringWriter();
        var (savedErr, savedOut) = (Console.Error, Console.Out);
        Console.SetError(err);
        Console.SetOut(output);
        try
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            int code = MiniTransformer.Cli.Program.Main(args);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            return new Outcome(code, err.ToString(), output.ToString(), allocated);
        }
        finally
        {
            Console.SetError(savedErr);
            Console.SetOut(savedOut);
        }
    }

    /// <summary>
    /// The contract for bad input: exit code 2, exactly one line on stderr starting "error:" that names
    /// <paramref name="file"/> (when given) and contains <paramref name="expect"/> (when given), no stack trace,
    /// and nothing at <paramref name="output"/>. Returns null when it holds, else what went wrong.
    /// </summary>
    public static string? Violation(Outcome o, string? file, string? expect, string? output, long maxAllocated)
    {
        var lines = o.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0).ToList();
        if (o.Code != 2) return $"exit code {o.Code}: {Head(o.Err)}";
        if (lines.Count != 1) return $"{lines.Count} stderr lines: {Head(o.Err)}";
        string line = lines[0];
        if (!line.StartsWith("error: ", StringComparison.Ordinal)) return $"not an error line: {Head(line)}";
        if (line.Contains("   at ", StringComparison.Ordinal) || line.Contains("Exception", StringComparison.Ordinal))
            return $"stack trace or exception name: {Head(line)}";
        if (file is not null && !line.Contains(Path.GetFileName(file), StringComparison.Ordinal)) return $"does not name {Path.GetFileName(file)}: {line}";
        if (expect is not null && !line.Contains(expect, StringComparison.OrdinalIgnoreCase)) return $"does not say '{expect}': {line}";
        if (output is not null && (File.Exists(output) || Directory.Exists(output))) return $"output {output} was written: {line}";
        if (o.AllocatedBytes > maxAllocated) return $"allocated {o.AllocatedBytes:N0} bytes (limit {maxAllocated:N0}): {line}";
        return null;
    }

    static string Head(string s) => s.Length > 300 ? s[..300] + "…" : s;
}

/// <summary>Small valid files the corpus mutates: a GPT-2 model directory, an input batch, an llm.c checkpoint, a token shard.</summary>
static class Seeds
{
    /// <summary>V=11, ctx=5, d=8, 2 layers, 2 heads, MLP 12, untied: every kind of GPT-2 tensor, a few KB.</summary>
    public static readonly Gpt2Config Config = new(11, 5, 8, 2, 2, 1e-5, 12, false);

    public static void WriteModel(string dir)
    {
        var m = new Gpt2<float>(Config, CpuBackend<float>.Instance);
        m.InitializeRandom(3);
        ModelFiles.Save(m, dir, StDType.F32);
    }

    public static void WriteInput(string path) =>
        SafeTensors.Write(path, [StTensor.FromInt64s("input_ids", [1, 2, 3, 4, 5, 6], 2, 3), StTensor.FromInt64s("targets", [2, 3, 4, 5, 6, -100], 2, 3)]);

    /// <summary>An llm.c version-3 checkpoint: V=11 padded to 16, maxT=5, 1 layer, 2 heads, C=8.</summary>
    public static byte[] Llmc(int maxT = 5, int V = 11, int L = 1, int NH = 2, int C = 8, int Vp = 16)
    {
        long floats = (long)Vp * C + maxT * C + L * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C;
        var bytes = new byte[LlmcCheckpoint.HeaderBytes + 4 * floats];
        int[] h = [LlmcCheckpoint.Magic, LlmcCheckpoint.Version, maxT, V, L, NH, C, Vp];
        for (int i = 0; i < h.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * i), h[i]);
        var rng = new Random(5);
        for (long i = 0; i < floats; i++)
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan((int)(LlmcCheckpoint.HeaderBytes + 4 * i)), (float)(rng.NextDouble() * 0.1 - 0.05));
        return bytes;
    }

    /// <summary>Block boundaries (byte offsets) of <see cref="Llmc"/>'s parameter tensors.</summary>
    public static List<long> LlmcBoundaries(int maxT = 5, int L = 1, int C = 8, int Vp = 16)
    {
        long[] sizes = [Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C, L * C, L * C, L * 4 * C * C, L * 4 * C, L * 4 * C * C, L * C, C, C];
        var b = new List<long> { LlmcCheckpoint.HeaderBytes };
        foreach (var s in sizes) b.Add(b[^1] + 4 * s);
        return b;
    }

    public static byte[] Shard(int count, int seed = 1)
    {
        var bytes = new byte[TokenShard.HeaderBytes + 2 * count];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, TokenShard.Magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), TokenShard.Version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), count);
        var rng = new Random(seed);
        for (int i = 0; i < count; i++) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(TokenShard.HeaderBytes + 2 * i), (ushort)rng.Next(50257));
        return bytes;
    }

    public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
}
