using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace MiniTransformer.Backends.Cpu;

/// <summary>
/// Splits [0, n) into contiguous chunks that depend only on n, the grain and <see cref="Threads"/>,
/// so every reduction adds in the same order run after run (bit-identical results for a fixed thread count).
/// Chunks run on the calling thread and the workers of a small spin-then-sleep pool (<see cref="Run"/>).
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
        Run(chunks, Threads, c =>
        {
            int lo = (int)((long)n * c / chunks), hi = (int)((long)n * (c + 1) / chunks);
            body(lo, hi);
        });
    }

    /// <summary>
    /// Runs body(0) … body(count − 1) on the calling thread and up to <paramref name="threads"/> − 1 pool workers,
    /// and returns when all have finished. Tasks are claimed one at a time in index order by whichever thread is
    /// free, so a worker that the OS has descheduled never holds the others up. What a task computes depends only
    /// on its index, never on which thread runs it. Called from inside a running task, or while another thread's
    /// job holds the pool, the tasks simply run in order on the calling thread.
    /// </summary>
    public static void Run(int count, int threads, Action<int> body)
    {
        if (count <= 0) return;
        threads = Math.Min(threads, count);
        if (threads <= 1 || !WorkerPool.TryRun(count, threads, body))
            for (int i = 0; i < count; i++) body(i);
    }
}

/// <summary>
/// A fork/join pool for the CPU kernels, replacing Parallel.For (whose per-call cost — task objects, thread-pool
/// wake-ups, partitioner — is paid by hundreds of small ops per training step). Workers spin for a short while
/// after each job (the next op usually follows within microseconds), then sleep on a semaphore.
/// One job at a time: the pool is taken with a compare-and-swap, and a caller that finds it taken (another thread,
/// or a nested call from inside a task) runs its tasks inline instead.
/// </summary>
internal static class WorkerPool
{
    /// <summary>How long an idle worker spins before it sleeps.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000;   // 200 µs

    private sealed class Worker
    {
        public readonly SemaphoreSlim Wake = new(0);
        public int Sleeping;   // 1 while the worker is (about to be) blocked on Wake
    }

    private static readonly object s_grow = new();
    private static Worker[] s_workers = [];
    private static int s_busy;               // 1 while a job holds the pool
    [ThreadStatic] private static bool t_inTask;

    // The current job. s_ticket = generation << 32 | next unclaimed index; a task is claimed by a compare-and-swap
    // that also checks the generation, so a worker still looking at a finished job can never claim a task of the
    // next one by accident.
    private static long s_ticket;
    private static int s_count, s_active, s_pending;
    private static Action<int>? s_body;
    private static ExceptionDispatchInfo? s_error;

    public static bool TryRun(int count, int threads, Action<int> body)
    {
        if (t_inTask || Interlocked.CompareExchange(ref s_busy, 1, 0) != 0)
            return false;
        try
        {
            EnsureWorkers(threads - 1);
            s_body = body;
            s_count = count;
            s_active = threads - 1;   // workers with index < s_active take part
            s_error = null;
            Volatile.Write(ref s_pending, count);
            long gen = (Volatile.Read(ref s_ticket) >> 32) + 1;
            Volatile.Write(ref s_ticket, gen << 32);
            var workers = s_workers;
            for (int w = 0; w < threads - 1; w++)
                if (Interlocked.Exchange(ref workers[w].Sleeping, 0) == 1)
                    workers[w].Wake.Release();
            Work(gen);
            var spin = new SpinWait();
            while (Volatile.Read(ref s_pending) != 0)
                spin.SpinOnce(sleep1Threshold: -1);
            s_body = null;
            s_error?.Throw();
            return true;
        }
        finally
        {
            Volatile.Write(ref s_busy, 0);
        }
    }

    /// <summary>Claims and runs tasks of generation <paramref name="gen"/> until none is left.</summary>
    private static void Work(long gen)
    {
        while (true)
        {
            long t = Volatile.Read(ref s_ticket);
            if (t >> 32 != gen) return;
            int index = (int)t;
            if (index >= s_count) return;
            if (Interlocked.CompareExchange(ref s_ticket, t + 1, t) != t) continue;
            // Claimed: the job cannot change until this task is counted off, so s_body is this job's body.
            t_inTask = true;
            try
            {
                s_body!(index);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref s_error, ExceptionDispatchInfo.Capture(e), null);
            }
            finally
            {
                t_inTask = false;
                Interlocked.Decrement(ref s_pending);
            }
        }
    }

    private static void EnsureWorkers(int n)
    {
        if (s_workers.Length >= n) return;
        lock (s_grow)
        {
            var grown = s_workers.ToList();
            while (grown.Count < n)
            {
                var w = new Worker();
                int id = grown.Count;
                grown.Add(w);
                new Thread(() => Loop(w, id)) { IsBackground = true, Name = $"mt-cpu-{id + 1}" }.Start();
            }
            s_workers = grown.ToArray();
        }
    }

    private static void Loop(Worker self, int id)
    {
        long seen = Volatile.Read(ref s_ticket) >> 32;
        while (true)
        {
            // Wait for a new generation: spin first, then sleep until a caller wakes us.
            long start = Stopwatch.GetTimestamp();
            long gen;
            while ((gen = Volatile.Read(ref s_ticket) >> 32) == seen)
            {
                if (Stopwatch.GetTimestamp() - start < SpinTicks)
                {
                    Thread.SpinWait(16);
                    continue;
                }
                Volatile.Write(ref self.Sleeping, 1);
                if (Volatile.Read(ref s_ticket) >> 32 != seen)
                {
                    // A job arrived while we were going to sleep. If its caller already took our Sleeping flag
                    // it has released the semaphore (or is about to): consume that release.
                    if (Interlocked.Exchange(ref self.Sleeping, 0) == 0)
                        self.Wake.Wait();
                    continue;
                }
                self.Wake.Wait();
                start = Stopwatch.GetTimestamp();
            }
            seen = gen;
            if (id < Volatile.Read(ref s_active))
                Work(gen);
        }
    }
}
