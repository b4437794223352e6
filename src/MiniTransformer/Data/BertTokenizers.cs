using System.Text;
using Microsoft.ML.Tokenizers;

namespace MiniTransformer.Data;

/// <summary>The ids of BERT's special tokens in a vocabulary.</summary>
public sealed record SpecialTokens(int Pad, int Unk, int Cls, int Sep, int Mask)
{
    public static readonly string[] Names = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

    public bool Contains(int id) => id == Pad || id == Unk || id == Cls || id == Sep || id == Mask;
}

/// <summary>A tokenizer with BERT's special tokens, as masked-language-model data needs it.</summary>
public interface IBertTokenizer : ITokenizer
{
    SpecialTokens Special { get; }
}

/// <summary>
/// A base vocabulary (a synthetic task's characters, GPT-2 BPE, ...) with BERT's five special tokens appended after it:
/// [PAD] = V₀, [UNK] = V₀+1, [CLS] = V₀+2, [SEP] = V₀+3, [MASK] = V₀+4. Base ids are unchanged, so a synthetic task's
/// data needs no re-encoding. In text, the special tokens are written as their names ("ab[MASK]d").
/// </summary>
public sealed class SpecialVocab(ITokenizer baseTokenizer) : IBertTokenizer
{
    public ITokenizer Base { get; } = baseTokenizer;
    public int BaseSize => Base.VocabSize;
    public int VocabSize => Base.VocabSize + SpecialTokens.Names.Length;
    public SpecialTokens Special { get; } = new(baseTokenizer.VocabSize, baseTokenizer.VocabSize + 1,
        baseTokenizer.VocabSize + 2, baseTokenizer.VocabSize + 3, baseTokenizer.VocabSize + 4);
    public int? EndOfText => Base.EndOfText;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        int start = 0, i = 0;
        while (i < text.Length)
        {
            int k = text[i] == '[' ? Array.FindIndex(SpecialTokens.Names, n => string.CompareOrdinal(text, i, n, 0, n.Length) == 0) : -1;
            if (k < 0) { i++; continue; }
            if (i > start) ids.AddRange(Base.Encode(text[start..i]));
            ids.Add(BaseSize + k);
            i += SpecialTokens.Names[k].Length;
            start = i;
        }
        if (start < text.Length) ids.AddRange(Base.Encode(text[start..]));
        return [.. ids];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder();
        int run = 0;
        for (int i = 0; i <= ids.Length; i++)
        {
            if (i < ids.Length && ids[i] < BaseSize) continue;
            if (i > run) sb.Append(Base.Decode(ids[run..i]));
            if (i < ids.Length)
            {
                if ((uint)(ids[i] - BaseSize) >= (uint)SpecialTokens.Names.Length)
                    throw new ArgumentOutOfRangeException(nameof(ids), $"token id {ids[i]} is outside the vocabulary of {VocabSize}");
                sb.Append(SpecialTokens.Names[ids[i] - BaseSize]);
            }
            run = i + 1;
        }
        return sb.ToString();
    }
}

/// <summary>
/// BERT WordPiece from a <c>vocab.txt</c> (one token per line, id = line number) through Microsoft.ML.Tokenizers'
/// <see cref="BertTokenizer"/>; lower-cases unless told otherwise. Encode gives the word pieces without [CLS]/[SEP].
/// </summary>
public sealed class BertWordPiece : IBertTokenizer
{
    readonly BertTokenizer tokenizer;

    public BertWordPiece(string vocabPath, bool lowerCase = true)
    {
        if (!File.Exists(vocabPath)) throw new InputException($"{vocabPath}: vocab.txt does not exist");
        string[] lines;
        try { lines = File.ReadAllLines(vocabPath); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new InputException($"{vocabPath}: cannot read the vocabulary: {e.Message}"); }
        var ids = new Dictionary<string, int>();
        for (int i = 0; i < lines.Length; i++) ids.TryAdd(lines[i].TrimEnd('\r'), i);
        int Id(string name) => ids.TryGetValue(name, out int id) ? id
            : throw new InputException($"{vocabPath}: the vocabulary has no {name} token (BERT needs {string.Join(", ", SpecialTokens.Names)})");
        Special = new SpecialTokens(Id("[PAD]"), Id("[UNK]"), Id("[CLS]"), Id("[SEP]"), Id("[MASK]"));
        VocabSize = lines.Length;
        Path = vocabPath;
        try { tokenizer = BertTokenizer.Create(vocabPath, new BertOptions { LowerCaseBeforeTokenization = lowerCase }); }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        { throw new InputException($"{vocabPath}: not a WordPiece vocabulary ({e.Message})"); }
    }

    public string Path { get; }
    public int VocabSize { get; }
    public SpecialTokens Special { get; }
    public int? EndOfText => null;

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return [.. tokenizer.EncodeToIds(text, addSpecialTokens: false, considerPreTokenization: true, considerNormalization: true)];
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary of {VocabSize}");
        return tokenizer.Decode(ids.ToArray(), skipSpecialTokens: false) ?? "";
    }
}
