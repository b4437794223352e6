namespace MiniTransformer.Data;

/// <summary>
/// Base for generated data: each batch row is an independent stream of <c>seq + 1</c> tokens drawn from its own
/// random stream (seed, split, index, row), so a batch is a pure function of its arguments. Row position p is scored
/// when the generator marks token p as predictable; targets[t] = stream[t + 1] where scored, else -100.
/// </summary>
public abstract class RowSource : IDataSource
{
    private protected RowSource(string spec, int seed)
    {
        Spec = spec;
        Seed = seed;
    }

    public string Spec { get; }

    public int VocabSize => Tokenizer.VocabSize;

    public abstract ITokenizer Tokenizer { get; }

    private protected int Seed { get; }

    public abstract string Describe();

    public abstract IReadOnlyList<string> SamplePrompts(int count);

    public void GetBatch(Split split, long index, int batch, int seq, Span<int> inputs, Span<int> targets)
    {
        DataSources.CheckBatchArgs(index, batch, seq, inputs, targets);
        var tokens = new int[seq + 1];
        var scored = new bool[seq + 1];
        for (int b = 0; b < batch; b++)
        {
            Array.Clear(tokens);
            Array.Clear(scored);
            var rng = DetRng.From(Seed, split, index, b, 0);
            var row = new RowWriter(tokens, scored);
            FillRow(split, ref rng, ref row);
            var inRow = inputs.Slice(b * seq, seq);
            var tgtRow = targets.Slice(b * seq, seq);
            for (int t = 0; t < seq; t++)
            {
                inRow[t] = tokens[t];
                tgtRow[t] = scored[t + 1] ? tokens[t + 1] : DataSources.Ignore;
            }
        }
    }

    /// <summary>Writes tokens into <paramref name="row"/> until it is full.</summary>
    private protected abstract void FillRow(Split split, ref DetRng rng, ref RowWriter row);
}

/// <summary>Appends tokens to a fixed-length row, dropping whatever does not fit.</summary>
internal ref struct RowWriter(Span<int> tokens, Span<bool> scored)
{
    private readonly Span<int> _tokens = tokens;
    private readonly Span<bool> _scored = scored;
    private int _pos;

    public readonly bool Full => _pos >= _tokens.Length;

    public void Add(int token, bool score)
    {
        if (_pos < _tokens.Length)
        {
            _tokens[_pos] = token;
            _scored[_pos] = score;
        }
        _pos++;
    }

    public void Add(scoped ReadOnlySpan<int> tokens, bool score)
    {
        foreach (int t in tokens) Add(t, score);
    }
}
