namespace MiniTransformer.Data;

/// <summary>
/// Small counter-based generator (SplitMix64) whose state is derived by hashing a tuple of integers, so that every
/// batch row has its own independent stream: a pure function of (seed, split, index, row, ...).
/// </summary>
internal struct DetRng
{
    private ulong _state;

    private DetRng(ulong state) => _state = state;

    public static DetRng From(params ReadOnlySpan<long> keys)
    {
        ulong h = 0x6A09E667F3BCC909UL;
        foreach (long k in keys)
            h = Mix(h ^ Mix((ulong)k + 0x9E3779B97F4A7C15UL));
        return new DetRng(h);
    }

    public static DetRng From(int seed, Split split, long index, long row, long stream) =>
        From(seed, (long)split, index, row, stream);

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextU64()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>Uniform integer in [0, n).</summary>
    public int Next(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        return (int)(((UInt128)NextU64() * (ulong)n) >> 64);
    }

    /// <summary>Uniform integer in [lo, hi] (inclusive).</summary>
    public int Next(int lo, int hi) => lo + Next(hi - lo + 1);

    /// <summary>Uniform integer in [0, n).</summary>
    public long NextLong(long n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        return (long)(((UInt128)NextU64() * (ulong)n) >> 64);
    }

    /// <summary>Uniform double in [0, 1).</summary>
    public double NextDouble() => (NextU64() >> 11) * (1.0 / (1UL << 53));

    public bool Chance(double p) => NextDouble() < p;

    public void Shuffle<T>(Span<T> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
