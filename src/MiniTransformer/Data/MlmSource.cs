namespace MiniTransformer.Data;

/// <summary>
/// Masked-language-model batches over any data source (BERT's dynamic masking). Each row is
/// <c>[CLS] x₀ … x_{T−3} [SEP]</c> with x the source's row; every content position is chosen with probability 15 %,
/// and a chosen position's input becomes [MASK] (80 %), a random ordinary token (10 %) or stays (10 %), its target
/// being the original token; every other target is −100. The choices come from their own random stream per
/// (seed, split, index, row), so a batch is a pure function of its arguments, like every source's.
/// </summary>
public sealed class MlmSource : IDataSource
{
    public const double MaskProbability = 0.15;
    /// <summary>Stream number of the masking draws (distinct from the sources' own streams).</summary>
    const long MaskStream = 0x4D4C4D;

    readonly IDataSource inner;
    readonly int seed;
    readonly int[] ordinary;   // ids a random replacement is drawn from (every id that is not special)

    /// <param name="inner">The text (row) source; its targets are not used.</param>
    /// <param name="tokenizer">The vocabulary with special tokens; default: the source's own with the five appended.</param>
    public MlmSource(IDataSource inner, int seed, IBertTokenizer? tokenizer = null)
    {
        this.inner = inner;
        this.seed = seed;
        Tokenizer = tokenizer ?? new SpecialVocab(inner.Tokenizer);
        if (Tokenizer.VocabSize < inner.VocabSize)
            throw new ArgumentException($"tokenizer of {Tokenizer.VocabSize} tokens cannot hold {inner.Spec}'s {inner.VocabSize}");
        ordinary = [.. Enumerable.Range(0, Tokenizer.VocabSize).Where(id => !Tokenizer.Special.Contains(id))];
        ChanceAccuracy = 1.0 / Math.Max(1, inner.VocabSize - (tokenizer is null ? 0 : 5));
    }

    /// <summary>The underlying spec (so data.json names a spec that <see cref="DataSources.Create"/> understands).</summary>
    public string Spec => inner.Spec;
    public IDataSource Inner => inner;
    public int VocabSize => Tokenizer.VocabSize;
    public IBertTokenizer Tokenizer { get; }
    ITokenizer IDataSource.Tokenizer => Tokenizer;
    /// <summary>Accuracy of a uniform guess over the ordinary tokens.</summary>
    public double ChanceAccuracy { get; }

    public string Describe() =>
        $"{inner.Spec} as BERT masked-LM rows ([CLS] … [SEP]; 15 % of tokens chosen: 80 % [MASK], 10 % random, 10 % kept); " +
        $"val accuracy = accuracy on the chosen tokens (chance ≈ {(100 * ChanceAccuracy).ToString("G2", System.Globalization.CultureInfo.InvariantCulture)} %)";

    public IReadOnlyList<string> SamplePrompts(int count) => inner.SamplePrompts(count);

    /// <summary>
    /// A stronger baseline than chance: the val accuracy of always answering the most frequent chosen token, over the
    /// same batches an evaluation uses (the first <paramref name="batches"/> val batches of B×T).
    /// </summary>
    public double MajorityAccuracy(int batches, int B, int T)
    {
        var counts = new Dictionary<int, long>();
        var inputs = new int[B * T];
        var targets = new int[B * T];
        long total = 0;
        for (int i = 0; i < batches; i++)
        {
            GetBatch(Split.Val, i, B, T, inputs, targets);
            foreach (int t in targets)
                if (t != DataSources.Ignore) { counts[t] = counts.GetValueOrDefault(t) + 1; total++; }
        }
        return total == 0 ? double.NaN : (double)counts.Values.Max() / total;
    }

    public void GetBatch(Split split, long index, int batch, int seq, Span<int> inputs, Span<int> targets)
    {
        DataSources.CheckBatchArgs(index, batch, seq, inputs, targets);
        if (seq < 3) throw new InputException($"--seq: masked-LM rows need at least 3 tokens ([CLS] x [SEP]), got {seq}");
        var sp = Tokenizer.Special;
        // The source's rows (their first seq − 2 tokens) become the content between [CLS] and [SEP].
        var raw = new int[batch * seq];
        var ignored = new int[batch * seq];
        inner.GetBatch(split, index, batch, seq, raw, ignored);
        for (int b = 0; b < batch; b++)
        {
            var rng = DetRng.From(seed, split, index, b, MaskStream);
            var inRow = inputs.Slice(b * seq, seq);
            var tgRow = targets.Slice(b * seq, seq);
            inRow[0] = sp.Cls; tgRow[0] = DataSources.Ignore;
            inRow[seq - 1] = sp.Sep; tgRow[seq - 1] = DataSources.Ignore;
            for (int t = 1; t < seq - 1; t++)
            {
                int token = raw[b * seq + t - 1];
                double u = rng.NextDouble(), v = rng.NextDouble();
                int replacement = ordinary[rng.Next(ordinary.Length)];   // always drawn: one fixed stream per position
                if (u >= MaskProbability || sp.Contains(token))
                {
                    inRow[t] = token; tgRow[t] = DataSources.Ignore;
                    continue;
                }
                tgRow[t] = token;
                inRow[t] = v < 0.8 ? sp.Mask : v < 0.9 ? replacement : token;
            }
        }
    }
}

/// <summary>Creates masked-LM sources from the usual data specs.</summary>
public static class MlmSources
{
    /// <summary>
    /// The spec's source as masked-LM data. Synthetic tasks, <c>chars:</c> and <c>shards:</c> keep their own vocabulary
    /// with the five special tokens appended; <c>text:PATH</c> goes through BERT WordPiece when
    /// <paramref name="vocabTxt"/> names a vocab.txt (else GPT-2 BPE + the five).
    /// </summary>
    public static MlmSource Create(string spec, int seed, string? vocabTxt = null)
    {
        if (vocabTxt is null) return new MlmSource(DataSources.Create(spec, seed), seed);
        if (!spec.StartsWith("text:", StringComparison.Ordinal))
            throw new InputException($"--vocab-txt: a WordPiece vocabulary applies to text:PATH data, not '{spec}'");
        var wp = new BertWordPiece(vocabTxt);
        string path = spec["text:".Length..];
        string text = TokenStreamSource.ReadText(spec, path);
        int[] tokens = wp.Encode(text);
        var source = TokenStreamSource.FromTokens(spec, seed, wp, tokens, $"BERT WordPiece ({Path.GetFileName(vocabTxt)}) tokens of {path} ({tokens.Length:N0} tokens, last 10% = val)");
        return new MlmSource(source, seed, wp);
    }
}
