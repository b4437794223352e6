using System.Text;

namespace MiniTransformer.Data;

/// <summary>
/// Word-level tokenizer over a closed vocabulary: text is split at whitespace and the punctuation marks
/// <c>. , ?</c> become tokens of their own. Decoding joins words with single spaces and attaches punctuation to the
/// word before it, so encode(decode(ids)) == ids.
/// </summary>
public sealed class WordTokenizer : ITokenizer
{
    private const string Punctuation = ".,?";

    private readonly string[] _words;
    private readonly Dictionary<string, int> _ids;

    /// <param name="words">Distinct tokens in id order (no whitespace inside a token).</param>
    /// <param name="endOfText">Optional token (in <paramref name="words"/>) that separates documents.</param>
    public WordTokenizer(IEnumerable<string> words, string? endOfText = null)
    {
        _words = [.. words];
        _ids = new Dictionary<string, int>(_words.Length, StringComparer.Ordinal);
        for (int i = 0; i < _words.Length; i++)
        {
            string w = _words[i];
            if (w.Length == 0 || w.Any(char.IsWhiteSpace) || (w.Length > 1 && w.Any(c => Punctuation.Contains(c))))
                throw new ArgumentException($"token {i} ('{w}') is empty or contains whitespace or punctuation", nameof(words));
            if (!_ids.TryAdd(w, i)) throw new ArgumentException($"token '{w}' appears twice", nameof(words));
        }
        if (endOfText is not null)
        {
            if (!_ids.TryGetValue(endOfText, out int id))
                throw new ArgumentException($"end-of-text token '{endOfText}' is not in the vocabulary", nameof(endOfText));
            EndOfText = id;
        }
    }

    public IReadOnlyList<string> Words => _words;

    public int VocabSize => _words.Length;

    public int? EndOfText { get; }

    public int Id(string word) =>
        _ids.TryGetValue(word, out int id) ? id : throw new InputException($"word '{word}' is not in the {_words.Length}-word vocabulary");

    /// <summary>Splits text into tokens (strings) the way <see cref="Encode"/> does.</summary>
    public static List<string> Split(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tokens = new List<string>();
        foreach (string raw in text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
        {
            int start = 0;
            for (int i = 0; i < raw.Length; i++)
            {
                if (Punctuation.Contains(raw[i]))
                {
                    if (i > start) tokens.Add(raw[start..i]);
                    tokens.Add(raw[i].ToString());
                    start = i + 1;
                }
            }
            if (start < raw.Length) tokens.Add(raw[start..]);
        }
        return tokens;
    }

    public int[] Encode(string text) => [.. Split(text).Select(Id)];

    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_words.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary of {_words.Length}");
            string w = _words[id];
            bool attach = w.Length == 1 && Punctuation.Contains(w[0]);
            if (sb.Length > 0 && !attach) sb.Append(' ');
            sb.Append(w);
        }
        return sb.ToString();
    }
}
