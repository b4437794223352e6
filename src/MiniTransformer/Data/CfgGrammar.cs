using System.Text;

namespace MiniTransformer.Data;

/// <summary>
/// The small context-free grammar behind <c>synthetic:cfg</c>: arithmetic-like expressions with two kinds of nested
/// brackets. A sentence is an <c>E</c>; sentences in a stream are each followed by <see cref="End"/> (';').
/// <code>
/// E -> T | T '+' E | T '-' E
/// T -> F | F '*' T
/// F -> D | V | '(' E ')' | '[' E ']'
/// D -> '0' | ... | '9'
/// V -> 'x' | 'y' | 'z'
/// </code>
/// Getting a sentence right needs long-range structure: brackets of both kinds must close in the right order, and an
/// operator must be followed by an operand. Sampled sentences (rejection sampling over the grammar's derivations)
/// have <see cref="MinLength"/> to <see cref="MaxLength"/> characters and nest at most <see cref="MaxDepth"/> brackets
/// deep; the verifier accepts the whole language, any length and depth up to 200.
/// </summary>
public static class CfgGrammar
{
    /// <summary>Sentence terminator, also the end-of-text token.</summary>
    public const char End = ';';

    /// <summary>All characters of the language (the tokenizer's alphabet, in id order).</summary>
    public const string Alphabet = ";()[]+-*0123456789xyz";

    public const int MinLength = 5;

    public const int MaxLength = 48;

    public const int MaxDepth = 4;

    private const string Digits = "0123456789";
    private const string Variables = "xyz";

    // Sentences nested deeper than this are rejected by the verifier (keeps recursion bounded on arbitrary input).
    private const int VerifierDepthLimit = 200;

    /// <summary>
    /// True when <paramref name="sentence"/> (without, or with one trailing, ';') is derivable from <c>E</c>.
    /// </summary>
    public static bool IsValid(string sentence)
    {
        ArgumentNullException.ThrowIfNull(sentence);
        var s = sentence.AsSpan();
        if (s.Length > 0 && s[^1] == End) s = s[..^1];
        if (s.IsEmpty) return false;
        int pos = 0;
        return ParseE(s, ref pos, 0) && pos == s.Length;
    }

    /// <summary>
    /// Splits generated text at ';' and returns (valid, complete) counts over the complete sentences, i.e. every piece
    /// followed by a ';' (the text before the first ';' is skipped when <paramref name="skipFirst"/>, for text that
    /// starts mid-sentence).
    /// </summary>
    public static (int Valid, int Total) CountValid(string text, bool skipFirst = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var pieces = text.Split(End);
        int valid = 0, total = 0;
        // The last piece has no terminator, so it is incomplete.
        for (int i = skipFirst ? 1 : 0; i < pieces.Length - 1; i++)
        {
            total++;
            if (IsValid(pieces[i])) valid++;
        }
        return (valid, total);
    }

    /// <summary>A random sentence (no terminator) for seed <paramref name="seed"/>.</summary>
    public static string Sample(long seed)
    {
        var rng = DetRng.From(seed, 7301);
        return Sample(ref rng);
    }

    internal static string Sample(ref DetRng rng)
    {
        var sb = new StringBuilder(MaxLength);
        while (true)
        {
            sb.Clear();
            SampleE(sb, ref rng, 0);
            if (sb.Length is >= MinLength and <= MaxLength) return sb.ToString();
        }
    }

    private static void SampleE(StringBuilder sb, ref DetRng rng, int depth)
    {
        SampleT(sb, ref rng, depth);
        for (int terms = 1; terms < 4 && rng.Chance(0.45); terms++)
        {
            sb.Append(rng.Chance(0.5) ? '+' : '-');
            SampleT(sb, ref rng, depth);
        }
    }

    private static void SampleT(StringBuilder sb, ref DetRng rng, int depth)
    {
        SampleF(sb, ref rng, depth);
        for (int factors = 1; factors < 3 && rng.Chance(0.3); factors++)
        {
            sb.Append('*');
            SampleF(sb, ref rng, depth);
        }
    }

    private static void SampleF(StringBuilder sb, ref DetRng rng, int depth)
    {
        double nest = depth < MaxDepth ? 0.4 : 0.0;
        double u = rng.NextDouble();
        if (u < nest)
        {
            bool round = rng.Chance(0.5);
            sb.Append(round ? '(' : '[');
            SampleE(sb, ref rng, depth + 1);
            sb.Append(round ? ')' : ']');
        }
        else if (rng.Chance(0.6))
        {
            sb.Append(Digits[rng.Next(Digits.Length)]);
        }
        else
        {
            sb.Append(Variables[rng.Next(Variables.Length)]);
        }
    }

    private static bool ParseE(ReadOnlySpan<char> s, ref int pos, int depth)
    {
        if (!ParseT(s, ref pos, depth)) return false;
        while (pos < s.Length && (s[pos] == '+' || s[pos] == '-'))
        {
            pos++;
            if (!ParseT(s, ref pos, depth)) return false;
        }
        return true;
    }

    private static bool ParseT(ReadOnlySpan<char> s, ref int pos, int depth)
    {
        if (!ParseF(s, ref pos, depth)) return false;
        while (pos < s.Length && s[pos] == '*')
        {
            pos++;
            if (!ParseF(s, ref pos, depth)) return false;
        }
        return true;
    }

    private static bool ParseF(ReadOnlySpan<char> s, ref int pos, int depth)
    {
        if (pos >= s.Length) return false;
        char c = s[pos];
        if (Digits.Contains(c) || Variables.Contains(c))
        {
            pos++;
            return true;
        }
        char close = c switch { '(' => ')', '[' => ']', _ => '\0' };
        if (close == '\0' || depth >= VerifierDepthLimit) return false;
        pos++;
        if (!ParseE(s, ref pos, depth + 1)) return false;
        if (pos >= s.Length || s[pos] != close) return false;
        pos++;
        return true;
    }
}

/// <summary>
/// <c>synthetic:cfg</c>: rows of sentences from <see cref="CfgGrammar"/>, each followed by ';', character tokens over
/// <see cref="CfgGrammar.Alphabet"/> (21 tokens, ';' = end of text). Every position is scored.
/// </summary>
public sealed class CfgSource : RowSource
{
    private static readonly CharTokenizer s_tokenizer = new(CfgGrammar.Alphabet, CfgGrammar.End);

    public CfgSource(int seed) : base("synthetic:cfg", seed) { }

    public override ITokenizer Tokenizer => s_tokenizer;

    public override string Describe() =>
        $"{Spec}: sentences of a bracketed-expression CFG ({CfgGrammar.MinLength}-{CfgGrammar.MaxLength} chars, nesting <= {CfgGrammar.MaxDepth}), " +
        "';'-separated, all positions scored; val accuracy = next-token accuracy on fresh sentences (below 100% by " +
        "construction since the grammar is random: the structural measure is the fraction of generated sentences " +
        "that CfgGrammar.IsValid accepts)";

    public override IReadOnlyList<string> SamplePrompts(int count)
    {
        var prompts = new string[count];
        for (int i = 0; i < count; i++)
        {
            var rng = DetRng.From(Seed, 7002, i);
            string sentence = CfgGrammar.Sample(ref rng);
            int keep = Math.Max(1, sentence.Length / 3);
            prompts[i] = sentence[..keep];
        }
        return prompts;
    }

    private protected override void FillRow(Split split, ref DetRng rng, ref RowWriter row)
    {
        while (!row.Full)
        {
            row.Add(s_tokenizer.Encode(CfgGrammar.Sample(ref rng)), score: true);
            row.Add(s_tokenizer.EndOfText!.Value, score: true);
        }
    }
}
