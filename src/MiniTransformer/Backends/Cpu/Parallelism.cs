namespace MiniTransformer.Backends.Cpu;

/// <summary>
/// Splits [0, n) into contiguous chunks that depend only on n, the grain and <see cref="Threads"/>,
/// so every reduction adds in the same order run after run (bit-identical results for a fixed thread count).
/// </summary>
public static class Parallelism
{
    /// <summary>Worker threads used by the CPU kernels (default: all cores).</summary>
    public static int Threads { get; set; } = Environment.ProcessorCount;

    public static void For(int n, int grain, Action<int, int> body)
    {
        if (n <= 0) return;
        int chunks = Math.Clamp(n / Math.Max(grain, 1), 1, Threads * 4);
        if (chunks == 1 || Threads == 1)
        {
            body(0, n);
            return;
        }
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = Threads }, c =>
        {
            int lo = (int)((long)n * c / chunks), hi = (int)((long)n * (c + 1) / chunks);
            body(lo, hi);
        });
    }
}
