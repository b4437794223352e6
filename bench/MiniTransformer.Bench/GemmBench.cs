using System.Diagnostics;
using System.Numerics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using MiniTransformer.Backends.Cpu;

namespace MiniTransformer.Bench;

/// <summary>One GEMM problem: C[M,N] = op(A)[M,K]·op(B)[K,N].</summary>
public sealed record GemmShape(string Name, int M, int N, int K, bool TransA, bool TransB)
{
    public double Flops => 2.0 * M * N * K;
    public override string ToString() => Name;

    /// <summary>Square products and the GPT-2 124M linear layers (256 token rows, d=768), each as
    /// forward x·W, input gradient dY·Wᵀ and weight gradient xᵀ·dY.</summary>
    public static IEnumerable<GemmShape> All()
    {
        foreach (int s in new[] { 512, 1024, 2048 })
            yield return new($"sq{s}", s, s, s, false, false);
        foreach (var (name, din, dout) in new[] { ("qkv", 768, 2304), ("fc", 768, 3072), ("proj", 3072, 768), ("lmhead", 768, 50257) })
        {
            const int rows = 256;
            yield return new($"{name}-xW", rows, dout, din, false, false);        // [256,din]·[din,dout]
            yield return new($"{name}-dYWt", rows, din, dout, false, true);      // [256,dout]·[din,dout]ᵀ
            yield return new($"{name}-xtdY", din, dout, rows, true, false);      // [256,din]ᵀ·[256,dout]
        }
    }
}

/// <summary>Adds a GFLOP/s column computed from the mean time and the shape's flop count.</summary>
public sealed class GflopsColumn : IColumn
{
    public string Id => "GFLOPS";
    public string ColumnName => "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Billions of floating-point operations (2·M·N·K) per second";
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats)
            return "-";
        var shape = benchmarkCase.Parameters.Items.Select(p => p.Value).OfType<GemmShape>().FirstOrDefault();
        return shape is null ? "-" : (shape.Flops / stats.Mean).ToString("F1");   // flop / ns = GFLOP/s
    }
}

public sealed class GemmConfig : ManualConfig
{
    public GemmConfig() => AddColumn(new GflopsColumn());
}

public abstract class GemmBenchBase<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private T[] _a = [], _b = [], _c = [];

    [ParamsSource(nameof(Shapes))]
    public GemmShape Shape { get; set; } = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    public static IEnumerable<GemmShape> Shapes() => GemmShape.All();

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(1);
        _a = Fill(rng, Shape.M * Shape.K);
        _b = Fill(rng, Shape.K * Shape.N);
        _c = new T[Shape.M * Shape.N];
        Gemm.MaxThreads = Threads;
    }

    [GlobalCleanup]
    public void Cleanup() => Gemm.MaxThreads = Environment.ProcessorCount;

    [Benchmark]
    public void Multiply()
    {
        var s = Shape;
        Gemm.Multiply<T>(s.TransA, s.TransB, s.M, s.N, s.K,
            _a, s.TransA ? s.M : s.K, _b, s.TransB ? s.K : s.N, _c, s.N, accumulate: false);
    }

    internal static T[] Fill(Random rng, int n)
    {
        var x = new T[n];
        for (int i = 0; i < n; i++)
            x[i] = T.CreateChecked(rng.NextDouble() - 0.5);
        return x;
    }
}

[Config(typeof(GemmConfig))]
public class GemmBenchF32 : GemmBenchBase<float>;

[Config(typeof(GemmConfig))]
public class GemmBenchF64 : GemmBenchBase<double>;

/// <summary>Plain timing loop (best of several runs) printing GFLOP/s per shape and thread count.</summary>
public static class GemmQuick
{
    public static void Run(int[] threads, string[] shapePrefixes)
    {
        if (threads.Length == 0)
            threads = [1, Environment.ProcessorCount];
        Console.WriteLine($"{"type",-6} {"shape",-14} {"M",6} {"N",6} {"K",6} {"thr",3} {"ms",9} {"GFLOP/s",8}");
        foreach (var shape in GemmShape.All().Where(s => shapePrefixes.Length == 0 || shapePrefixes.Any(p => s.Name.StartsWith(p, StringComparison.Ordinal))))
            foreach (int t in threads)
            {
                Measure<float>("f32", shape, t);
                if (shape.Name.StartsWith("sq", StringComparison.Ordinal))
                    Measure<double>("f64", shape, t);
            }
        Gemm.MaxThreads = Environment.ProcessorCount;
    }

    private static void Measure<T>(string type, GemmShape s, int threads) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var rng = new Random(1);
        T[] a = GemmBenchBase<T>.Fill(rng, s.M * s.K), b = GemmBenchBase<T>.Fill(rng, s.K * s.N), c = new T[s.M * s.N];
        Gemm.MaxThreads = threads;
        void Once() => Gemm.Multiply<T>(s.TransA, s.TransB, s.M, s.N, s.K, a, s.TransA ? s.M : s.K, b, s.TransB ? s.K : s.N, c, s.N, false);
        Once();
        var sw = Stopwatch.StartNew();
        int reps = 0;
        double best = double.MaxValue;
        while (reps < 3 || sw.Elapsed.TotalSeconds < 1.0)
        {
            long t0 = Stopwatch.GetTimestamp();
            Once();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t0).TotalSeconds);
            reps++;
        }
        Console.WriteLine($"{type,-6} {s.Name,-14} {s.M,6} {s.N,6} {s.K,6} {threads,3} {best * 1e3,9:F2} {s.Flops / best / 1e9,8:F1}");
    }
}
