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

    public InductionSource(int seed, int minSegment = 4, int maxSegment = 16)
        : base("synthetic:induction", seed)
    {
        if (minSegment < 1 || maxSegment < minSegment || maxSegment > 1024)
            throw new ArgumentOutOfRangeException(nameof(minSegment), $"need 1 <= minSegment <= maxSegment <= 1024, got {minSegment}..{maxSegment}");
        MinSegment = minSegment;
        MaxSegment = maxSegment;
    }

    public int MinSegment { get; }

    public int MaxSegment { get; }

    public override ITokenizer Tokenizer => s_tokenizer;

    public override string Describe() =>
        $"{Spec}: episodes 'SEGMENT>SEGMENT|' with random {MinSegment}-{MaxSegment}-letter segments over {Letters.Length} letters; " +
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
            for (int i = 0; i < span.Length; i++) span[i] = Letters[r.Next(Letters.Length)];
        });
    }

    private protected override void FillRow(Split split, ref DetRng rng, ref RowWriter row)
    {
        const int firstLetter = 2, copyId = 1, endId = 0;
        Span<int> segment = stackalloc int[MaxSegment];
        while (!row.Full)
        {
            int len = rng.Next(MinSegment, MaxSegment);
            var seg = segment[..len];
            for (int i = 0; i < len; i++) seg[i] = firstLetter + rng.Next(Letters.Length);
            row.Add(seg, score: false);
            row.Add(copyId, score: false);
            row.Add(seg, score: true);
            row.Add(endId, score: true);
        }
    }
}
