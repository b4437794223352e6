using System.Numerics;
using MiniTransformer.Models;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Analysis;

/// <summary>
/// A BERT word-embedding table (the rows of <c>embeddings.word_embeddings.weight</c>, before positions, token types and
/// the embedding LayerNorm) as word vectors: a word's vector is the mean of its WordPiece rows, and nearest neighbours
/// are by cosine over every row except the bracketed special tokens ([PAD], [CLS], [SEP], [MASK], [UNK], [unusedN]).
/// </summary>
public sealed class WordVectors
{
    readonly double[] unitRows;   // [V, C], each row divided by its norm (zero rows stay zero)
    readonly bool[] candidate;

    public int VocabSize { get; }
    public int Dim { get; }
    public string[] Vocab { get; }
    public double[] Table { get; }

    /// <param name="table">the embedding rows, [V·C] row-major</param>
    /// <param name="vocab">V tokens</param>
    /// <param name="wholeWordsOnly">also skip WordPiece continuations (##…) as neighbours</param>
    public WordVectors(double[] table, string[] vocab, int dim, bool wholeWordsOnly = false)
    {
        if (table.Length != vocab.Length * dim) throw new ArgumentException($"table has {table.Length} values, expected {vocab.Length}·{dim}");
        Table = table; Vocab = vocab; Dim = dim; VocabSize = vocab.Length;
        unitRows = new double[table.Length];
        candidate = new bool[VocabSize];
        for (int v = 0; v < VocabSize; v++)
        {
            var row = table.AsSpan(v * dim, dim);
            double n = Geodesic.Norm(row);
            if (n > 0) for (int j = 0; j < dim; j++) unitRows[v * dim + j] = row[j] / n;
            candidate[v] = n > 0 && !IsSpecial(vocab[v]) && !(wholeWordsOnly && vocab[v].StartsWith("##", StringComparison.Ordinal));
        }
    }

    /// <summary>The word-embedding table of a BERT model, in float64.</summary>
    public static WordVectors FromModel<F>(Bert<F> model, string[] vocab, bool wholeWordsOnly = false) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var w = model.Wte.Value.Data;
        var table = new double[w.Length];
        for (int i = 0; i < w.Length; i++) table[i] = double.CreateTruncating(w[i]);
        return new WordVectors(table, vocab, model.Config.HiddenSize, wholeWordsOnly);
    }

    /// <summary>[PAD], [unused0], [CLS] …: tokens in square brackets are not words.</summary>
    public static bool IsSpecial(string token) => token.Length >= 2 && token[0] == '[' && token[^1] == ']';

    public bool IsCandidate(int id) => candidate[id];

    public ReadOnlySpan<double> Row(int id) => Table.AsSpan(id * Dim, Dim);

    /// <summary>The mean of the rows of the word's pieces (one piece: its row).</summary>
    public double[] WordVector(IReadOnlyList<int> pieces)
    {
        if (pieces.Count == 0) throw new ArgumentException("a word needs at least one piece");
        var r = new double[Dim];
        foreach (int id in pieces)
        {
            var row = Row(id);
            for (int j = 0; j < Dim; j++) r[j] += row[j] / pieces.Count;
        }
        return r;
    }

    /// <summary>The WordPiece ids of one word (an InputException when it is not a single word or maps to [UNK]).</summary>
    public static int[] Pieces(BertUncasedTokenizer tokenizer, string word, string flag)
    {
        var words = BertUncasedTokenizer.BasicTokenize(word);
        if (words.Count != 1) throw new InputException($"{flag}: '{word}' is not one word (the tokenizer splits it into {words.Count})");
        var ids = tokenizer.Pieces(word);
        if (ids.Length == 0 || ids.Contains(tokenizer.Unk)) throw new InputException($"{flag}: '{word}' is not in the vocabulary (it maps to [UNK])");
        return ids;
    }

    /// <summary>The k rows nearest to x by cosine (candidates only, <paramref name="exclude"/> left out), best first.</summary>
    public (int Id, string Token, double Cosine)[] Nearest(ReadOnlySpan<double> x, int k, ISet<int>? exclude = null)
    {
        var u = Geodesic.Unit(x);
        var cos = new double[VocabSize];
        var rows = unitRows;
        int dim = Dim;
        System.Threading.Tasks.Parallel.For(0, VocabSize, v =>
        {
            if (!candidate[v]) { cos[v] = double.NegativeInfinity; return; }
            double s = 0;
            for (int j = 0; j < dim; j++) s += rows[v * dim + j] * u[j];
            cos[v] = s;
        });
        return [.. Enumerable.Range(0, VocabSize)
            .Where(v => candidate[v] && (exclude is null || !exclude.Contains(v)))
            .OrderByDescending(v => cos[v]).ThenBy(v => v)
            .Take(k)
            .Select(v => (v, Vocab[v], cos[v]))];
    }
}
