namespace MiniTransformer.Data;

/// <summary>
/// <c>synthetic:induction</c>: each row is a run of episodes <c>SEGMENT&gt;SEGMENT|</c>, where SEGMENT is a random string of
/// 4-16 letters a-x. Only the copy (the tokens after '&gt;', including the closing '|') is predictable, so only those
/// positions are scored and token accuracy = induction (copy) accuracy. Character vocabulary of 26:
/// '|' (end of text, id 0), '&gt;' (copy marker, id 1), 'a'..'x' (ids 2..25). Val rows use different random streams.
/// </summary>
public sealed class InductionSource : RowSource
{
    public const string Letters = "abcdefghijklmnopqrstuvwx";
    public const char EndMark = '|';
    public const char CopyMark = '>';

    private static readonly CharTokenizer s_tokenizer = new(EndMark.ToString() + CopyMark + Letters, EndMark);

    public InductionSource(int seed, int minSegment = 4, int maxSegment = 12)
        : base("synthetic:induction", seed)
    {
        if (minSegment < 1 || maxSegment < minSegment || maxSegment > Letters.Length)
            throw new ArgumentOutOfRangeException(nameof(minSegment), $"need 1 <= minSegment <= maxSegment <= {Letters.Length} (segments use distinct letters), got {minSegment}..{maxSegment}");
        MinSegment = minSegment;
        MaxSegment = maxSegment;
    }

    public int MinSegment { get; }

    public int MaxSegment { get; }

    public override ITokenizer Tokenizer => s_tokenizer;

    public override string Describe() =>
        $"{Spec}: episodes 'SEGMENT>SEGMENT|' with random {MinSegment}-{MaxSegment}-letter segments of distinct letters (of {Letters.Length}); " +
        $"only the copy after '>' is scored, so val accuracy = induction/copy accuracy on fresh segments (chance ~{1.0 / Letters.Length:P0})";

    public override IReadOnlyList<string> SamplePrompts(int count)
    {
        var prompts = new string[count];
        for (int i = 0; i < count; i++)
        {
            var rng = DetRng.From(Seed, 7001, i);
            prompts[i] = RandomSegment(ref rng) + CopyMark;
        }
        return prompts;
    }

    private string RandomSegment(ref DetRng rng)
    {
        int len = rng.Next(MinSegment, MaxSegment);
        return string.Create(len, rng.NextU64(), static (span, state) =>
        {
            var r = DetRng.From((long)state);
            Span<int> picks = stackalloc int[span.Length];
            DistinctLetters(ref r, picks);
            for (int i = 0; i < span.Length; i++) span[i] = Letters[picks[i]];
        });
    }

    private protected override void FillRow(Split split, ref DetRng rng, ref RowWriter row)
    {
        const int firstLetter = 2, copyId = 1, endId = 0;
        Span<int> segment = stackalloc int[MaxSegment];
        Span<int> previous = stackalloc int[MaxSegment];
        int previousLength = 0;
        while (!row.Full)
        {
            int len = rng.Next(MinSegment, MaxSegment);
            var seg = segment[..len];
            DistinctLetters(ref rng, seg, previous[..previousLength]);
            seg.CopyTo(previous);
            previousLength = len;
            for (int i = 0; i < len; i++) seg[i] += firstLetter;
            row.Add(seg, score: false);
            row.Add(copyId, score: false);
            row.Add(seg, score: true);
            row.Add(endId, score: true);
        }
    }

    /// <summary>
    /// Fills <paramref name="picks"/> with distinct letter indices (a partial Fisher–Yates shuffle), taking letters of the
    /// previous episode's segment only when the others run out. Distinct letters make every copy position predictable
    /// from content alone — the token after the earlier occurrence of the current token — with no second, older
    /// occurrence nearby to confuse an induction head.
    /// </summary>
    private static void DistinctLetters(ref DetRng rng, Span<int> picks, ReadOnlySpan<int> avoid = default)
    {
        // pool = [letters not in avoid | letters in avoid]; draw from the first group, then the second.
        Span<int> pool = stackalloc int[Letters.Length];
        int fresh = 0, k = Letters.Length;
        for (int letter = 0; letter < Letters.Length; letter++)
        {
            if (avoid.Contains(letter)) pool[--k] = letter;
            else pool[fresh++] = letter;
        }
        for (int i = 0; i < picks.Length; i++)
        {
            int end = i < fresh ? fresh : pool.Length;
            int j = i + rng.Next(end - i);
            (pool[i], pool[j]) = (pool[j], pool[i]);
            picks[i] = pool[i];
        }
    }
}
