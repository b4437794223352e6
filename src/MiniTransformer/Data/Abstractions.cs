namespace MiniTransformer.Data;

/// <summary>Which part of a data source a batch is drawn from.</summary>
public enum Split
{
    Train,
    Val,
}

/// <summary>Maps text to token ids and back.</summary>
public interface ITokenizer
{
    /// <summary>Number of distinct token ids (ids are 0 .. VocabSize-1).</summary>
    int VocabSize { get; }

    /// <summary>Encodes text; throws <see cref="InputException"/> for text the vocabulary cannot represent.</summary>
    int[] Encode(string text);

    string Decode(ReadOnlySpan<int> ids);

    /// <summary>The document separator id (GPT-2: 50256), or null when the vocabulary has none.</summary>
    int? EndOfText { get; }
}

/// <summary>
/// A deterministic source of language-model batches.
/// </summary>
public interface IDataSource
{
    /// <summary>The spec this source was created from, e.g. "synthetic:induction".</summary>
    string Spec { get; }

    /// <summary>The smallest vocabulary a model needs for this data.</summary>
    int VocabSize { get; }

    ITokenizer Tokenizer { get; }

    /// <summary>
    /// Fills <paramref name="inputs"/>[B*T] and <paramref name="targets"/>[B*T] (row-major [B,T]) with batch number
    /// <paramref name="index"/> of <paramref name="split"/>. A pure function of (construction seed, split, index, B, T).
    /// <c>targets[t]</c> is the token that follows <c>inputs[t]</c>, or <see cref="DataSources.Ignore"/> (-100)
    /// where the position is not scored.
    /// </summary>
    void GetBatch(Split split, long index, int batch, int seq, Span<int> inputs, Span<int> targets);

    /// <summary>One line for logs and reports: the task and what val accuracy measures.</summary>
    string Describe();

    /// <summary>Prompts (text encodable by <see cref="Tokenizer"/>) for samples and demos; deterministic.</summary>
    IReadOnlyList<string> SamplePrompts(int count);
}
