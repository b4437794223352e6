namespace MiniTransformer.Data;

/// <summary>Creates data sources from specs.</summary>
public static class DataSources
{
    /// <summary>Target value of positions that are not scored.</summary>
    public const int Ignore = -100;

    /// <summary>The accepted spec forms, for help text.</summary>
    public static IReadOnlyList<string> Forms { get; } =
        ["synthetic:induction", "synthetic:cfg", "synthetic:bio", "text:PATH", "chars:PATH", "shards:GLOB"];

    /// <summary>
    /// Creates the source named by <paramref name="spec"/>; throws <see cref="InputException"/> naming the spec or file
    /// for an unknown spec, a missing or empty file, or a bad shard.
    /// </summary>
    public static IDataSource Create(string spec, int seed)
    {
        if (string.IsNullOrWhiteSpace(spec))
            throw new InputException($"empty data spec; expected one of {string.Join(", ", Forms)}");
        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        string kind = colon < 0 ? spec : spec[..colon];
        string arg = colon < 0 ? "" : spec[(colon + 1)..];
        return kind switch
        {
            "synthetic" => arg switch
            {
                "induction" => new InductionSource(seed),
                "cfg" => new CfgSource(seed),
                "bio" => new BioSource(seed),
                _ => throw new InputException(
                    $"unknown synthetic task in data spec '{spec}'; expected synthetic:induction, synthetic:cfg or synthetic:bio"),
            },
            "text" => TokenStreamSource.FromTextFile(spec, arg, seed),
            "chars" => TokenStreamSource.FromCharFile(spec, arg, seed),
            "shards" => TokenStreamSource.FromShards(spec, arg, seed),
            _ => throw new InputException($"unknown data spec '{spec}'; expected one of {string.Join(", ", Forms)}"),
        };
    }

    internal static void CheckBatchArgs(long index, int batch, int seq, Span<int> inputs, Span<int> targets)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(seq);
        long n = (long)batch * seq;
        if (inputs.Length < n || targets.Length < n)
            throw new ArgumentException($"inputs ({inputs.Length}) and targets ({targets.Length}) must hold batch*seq = {n} tokens");
    }
}
