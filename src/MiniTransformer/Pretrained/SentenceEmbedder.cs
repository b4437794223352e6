using System.Globalization;
using System.Numerics;
using System.Text;
using Microsoft.ML.Tokenizers;
using MiniTransformer.Backends;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Pretrained;

/// <summary>
/// Hugging Face's uncased BertTokenizer: <see cref="BasicTokenize"/> (whitespace, every punctuation character, CJK
/// characters apart, lower-casing, accents stripped — strip_accents follows do_lower_case), then greedy longest-match
/// word pieces by Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/> over the model's vocab.txt;
/// words over 100 characters become [UNK]. <see cref="Encode"/> adds [CLS] … [SEP] and truncates the pieces so the
/// whole fits <c>maxTokens</c> (as sentence-transformers does: [SEP] kept).
/// </summary>
public sealed class BertUncasedTokenizer
{
    readonly BertTokenizer tokenizer;
    public int Cls { get; }
    public int Sep { get; }
    public int Pad { get; }
    public int Unk { get; }
    public string[] Vocab { get; }

    public BertUncasedTokenizer(string vocabPath)
    {
        if (!File.Exists(vocabPath)) throw new InputException($"{vocabPath}: no such vocabulary file");
        Vocab = [.. File.ReadAllLines(vocabPath).Select(l => l.TrimEnd('\r'))];
        try
        {
            tokenizer = BertTokenizer.Create(vocabPath, new BertOptions { LowerCaseBeforeTokenization = false, ApplyBasicTokenization = false, SplitOnSpecialTokens = false });
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        { throw new InputException($"{vocabPath}: not a WordPiece vocabulary ({e.Message})"); }
        Cls = tokenizer.ClassificationTokenId; Sep = tokenizer.SeparatorTokenId; Pad = tokenizer.PaddingTokenId;
        Unk = Array.IndexOf(Vocab, "[UNK]");
    }

    /// <summary>The word pieces of a text, without special tokens.</summary>
    public int[] Pieces(string text)
    {
        var ids = new List<int>();
        foreach (var word in BasicTokenize(text))
        {
            if (word.Length > 100) { ids.Add(Unk); continue; }   // max_input_chars_per_word
            ids.AddRange(tokenizer.EncodeToIds(word, addSpecialTokens: false, considerPreTokenization: false, considerNormalization: false));
        }
        return [.. ids];
    }

    /// <summary>
    /// Hugging Face's BasicTokenizer (uncased): drop NUL, U+FFFD and control characters, whitespace to spaces, spaces
    /// around CJK ideographs, split on whitespace, lower-case, strip accents (NFD without nonspacing marks), split off
    /// every punctuation character — all ASCII non-alphanumeric symbols ($ + &lt; = &gt; ^ ` | ~ _ …) and Unicode
    /// category P. Done here rather than by Microsoft.ML.Tokenizers' basic tokenization, which drops symbols such as
    /// '$', '+' and '=' and keeps '_' inside words, and whose accent stripping needs ICU (off under
    /// InvariantGlobalization); its WordPiece step is used as it is.
    /// </summary>
    public static List<string> BasicTokenize(string text)
    {
        var sb = new StringBuilder(text.Length + 16);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            int cp = c;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) cp = char.ConvertToUtf32(c, text[i + 1]);
            string s = cp > 0xFFFF ? text.Substring(i++, 2) : c.ToString();
            if (cp == 0 || cp == 0xFFFD) continue;
            var cat = CharUnicodeInfo.GetUnicodeCategory(cp);
            if (c is ' ' or '\t' or '\n' or '\r' || cat == UnicodeCategory.SpaceSeparator) { sb.Append(' '); continue; }
            if (cat is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate or UnicodeCategory.OtherNotAssigned) continue;
            if (IsCjk(cp)) { sb.Append(' ').Append(s).Append(' '); continue; }
            sb.Append(s);
        }
        var words = new List<string>();
        foreach (var token in sb.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            string t = Nfd.StripAccents(token.ToLowerInvariant());
            int start = 0;
            for (int i = 0; i < t.Length; i++)
            {
                int len = char.IsHighSurrogate(t[i]) && i + 1 < t.Length ? 2 : 1;
                if (IsPunctuation(len == 2 ? char.ConvertToUtf32(t[i], t[i + 1]) : t[i]))
                {
                    if (i > start) words.Add(t[start..i]);
                    words.Add(t.Substring(i, len));
                    start = i + len;
                }
                i += len - 1;
            }
            if (start < t.Length) words.Add(t[start..]);
        }
        return words;
    }

    static bool IsPunctuation(int cp)
    {
        if (cp is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126) return true;
        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    static bool IsCjk(int cp) => cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF
        or >= 0x2A700 and <= 0x2B73F or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF
        or >= 0x2F800 and <= 0x2FA1F;

    /// <summary>[CLS] pieces [SEP], the pieces cut so that the whole has at most <paramref name="maxTokens"/> ids.</summary>
    public int[] Encode(string text, int maxTokens)
    {
        if (maxTokens < 2) throw new InputException($"max tokens must be at least 2 (got {maxTokens})");
        var p = Pieces(text);
        int n = Math.Min(p.Length, maxTokens - 2);
        var ids = new int[n + 2];
        ids[0] = Cls;
        p.AsSpan(0, n).CopyTo(ids.AsSpan(1));
        ids[^1] = Sep;
        return ids;
    }

    public string Token(int id) => (uint)id < (uint)Vocab.Length ? Vocab[id] : $"<{id}>";
}

/// <summary>
/// Sentence embeddings as all-MiniLM-L6-v2's users compute them: the encoder's last hidden states, mean-pooled over the
/// attention mask, then L2-normalised (sentence-transformers' Pooling(mean) + Normalize). Sentences are run in padded
/// batches (token type 0, padding masked), so results do not depend on the batch they share.
/// </summary>
public sealed class SentenceEmbedder<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    public Bert<F> Model { get; }
    public BertUncasedTokenizer Tokenizer { get; }
    public int MaxTokens { get; init; } = MiniLm.MaxTokens;
    public int BatchSize { get; init; } = 32;

    public SentenceEmbedder(string modelDir, IBackend<F> ops)
    {
        string vocab = Path.Combine(modelDir, "vocab.txt");
        if (!File.Exists(vocab)) throw new InputException($"{modelDir}: no vocab.txt in the model directory");
        Model = ModelFiles.LoadBert(modelDir, ops);
        Tokenizer = new BertUncasedTokenizer(vocab);
        if (Tokenizer.Vocab.Length != Model.VocabSize)
            throw new InputException($"{vocab}: {Tokenizer.Vocab.Length} tokens, but the model has {Model.VocabSize} word embeddings");
    }

    public SentenceEmbedder(Bert<F> model, BertUncasedTokenizer tokenizer) { Model = model; Tokenizer = tokenizer; }

    public int[] Tokenize(string text) => Tokenizer.Encode(text, Math.Min(MaxTokens, Model.MaxSequence));

    public double[][] Embed(IReadOnlyList<string> texts) => EmbedIds([.. texts.Select(Tokenize)]);

    /// <summary>Embeddings of sentences given as token ids (each already with [CLS]/[SEP]).</summary>
    public double[][] EmbedIds(IReadOnlyList<int[]> sentences)
    {
        var result = new double[sentences.Count][];
        // Batches of similar lengths (the result does not depend on the batching: padding is masked).
        var order = Enumerable.Range(0, sentences.Count).OrderBy(i => sentences[i].Length).ToArray();
        for (int start = 0; start < sentences.Count; start += BatchSize)
        {
            int B = Math.Min(BatchSize, sentences.Count - start);
            var batch = order.Skip(start).Take(B).Select(i => sentences[i]).ToList();
            var (ids, mask, T) = Pad(batch, Tokenizer.Pad);
            Model.Forward(ids, null, B, T, null, mask);
            var pooled = MeanPool(Model.Hidden.Span, mask, B, T, Model.Config.HiddenSize);
            for (int b = 0; b < B; b++) result[order[start + b]] = Normalize(pooled[b]);
        }
        return result;
    }

    /// <summary>Right-padded ids and the 1/0 attention mask, [B, T] with T the longest sentence.</summary>
    public static (int[] Ids, int[] Mask, int T) Pad(IReadOnlyList<int[]> batch, int pad)
    {
        int B = batch.Count, T = batch.Max(s => s.Length);
        var ids = new int[B * T];
        var mask = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            Array.Fill(ids, pad, b * T, T);
            batch[b].CopyTo(ids, b * T);
            Array.Fill(mask, 1, b * T, batch[b].Length);
        }
        return (ids, mask, T);
    }

    /// <summary>Σ_t mask·h / max(Σ_t mask, 1e-9) per sentence, in double.</summary>
    public static double[][] MeanPool(ReadOnlySpan<F> hidden, int[] mask, int B, int T, int C)
    {
        var r = new double[B][];
        for (int b = 0; b < B; b++)
        {
            var acc = new double[C];
            double count = 0;
            for (int t = 0; t < T; t++)
            {
                if (mask[b * T + t] == 0) continue;
                count++;
                var row = hidden.Slice((b * T + t) * C, C);
                for (int c = 0; c < C; c++) acc[c] += double.CreateTruncating(row[c]);
            }
            double inv = 1 / Math.Max(count, 1e-9);
            for (int c = 0; c < C; c++) acc[c] *= inv;
            r[b] = acc;
        }
        return r;
    }

    /// <summary>x / max(‖x‖, 1e-12) (torch.nn.functional.normalize).</summary>
    public static double[] Normalize(double[] x)
    {
        double n = Math.Sqrt(x.Sum(v => v * v));
        double inv = 1 / Math.Max(n, 1e-12);
        return [.. x.Select(v => v * inv)];
    }

    public static double Cosine(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
        return ab / Math.Sqrt(aa * bb);
    }
}
