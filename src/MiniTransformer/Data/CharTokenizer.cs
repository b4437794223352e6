namespace MiniTransformer.Data;

/// <summary>
/// One token per UTF-16 character of a fixed alphabet; id = position in the alphabet.
/// </summary>
public sealed class CharTokenizer : ITokenizer
{
    private readonly string _alphabet;
    private readonly Dictionary<char, int> _ids;

    /// <param name="alphabet">Distinct characters; a character's id is its index.</param>
    /// <param name="endOfText">Optional character (in the alphabet) that separates documents.</param>
    public CharTokenizer(string alphabet, char? endOfText = null)
    {
        ArgumentNullException.ThrowIfNull(alphabet);
        if (alphabet.Length == 0) throw new ArgumentException("alphabet is empty", nameof(alphabet));
        _alphabet = alphabet;
        _ids = new Dictionary<char, int>(alphabet.Length);
        for (int i = 0; i < alphabet.Length; i++)
        {
            if (!_ids.TryAdd(alphabet[i], i))
                throw new ArgumentException($"alphabet repeats character {Show(alphabet[i])}", nameof(alphabet));
        }
        if (endOfText is char eot)
        {
            if (!_ids.TryGetValue(eot, out int id))
                throw new ArgumentException($"end-of-text character {Show(eot)} is not in the alphabet", nameof(endOfText));
            EndOfText = id;
        }
    }

    /// <summary>A tokenizer over the sorted (ordinal) distinct characters of <paramref name="text"/>.</summary>
    public static CharTokenizer FromText(string text)
    {
        var chars = text.Distinct().Order().ToArray();
        return new CharTokenizer(new string(chars));
    }

    /// <summary>The characters, in id order.</summary>
    public string Alphabet => _alphabet;

    public int VocabSize => _alphabet.Length;

    public int? EndOfText { get; }

    public bool TryGetId(char c, out int id) => _ids.TryGetValue(c, out id);

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new int[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            if (!_ids.TryGetValue(text[i], out ids[i]))
                throw new InputException(
                    $"character {Show(text[i])} at position {i} is not in the {_alphabet.Length}-character vocabulary");
        }
        return ids;
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var chars = new char[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)_alphabet.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary of {_alphabet.Length}");
            chars[i] = _alphabet[id];
        }
        return new string(chars);
    }

    internal static string Show(char c) =>
        char.IsControl(c) || char.IsWhiteSpace(c) || char.IsSurrogate(c) ? $"U+{(int)c:X4}" : $"'{c}' (U+{(int)c:X4})";
}
