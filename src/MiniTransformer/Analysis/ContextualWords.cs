using System.Numerics;
using MiniTransformer.Models;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Analysis;

/// <summary>
/// Contextual word vectors from a BERT encoder: the last hidden state (the output of the last layer, before any
/// pooling) at a chosen word of a sentence, averaged over that word's WordPiece positions. Sentences are given as
/// space-separated words, run as [CLS] pieces… [SEP] with token type 0, in padded batches (padding is masked, so a
/// result does not depend on its batch).
/// </summary>
public sealed class ContextualWords<F>(Bert<F> model, BertUncasedTokenizer tokenizer) where F : unmanaged, IFloatingPointIeee754<F>
{
    public Bert<F> Model { get; } = model;
    public BertUncasedTokenizer Tokenizer { get; } = tokenizer;
    public int BatchSize { get; init; } = 32;

    /// <summary>Ids with [CLS]/[SEP] and, per space-separated word, the [start, end) of its pieces in those ids.</summary>
    public (int[] Ids, (int Start, int End)[] Spans) Encode(string sentence)
    {
        var words = sentence.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var ids = new List<int> { Tokenizer.Cls };
        var spans = new (int, int)[words.Length];
        for (int w = 0; w < words.Length; w++)
        {
            int start = ids.Count;
            ids.AddRange(Tokenizer.Pieces(words[w]));
            spans[w] = (start, ids.Count);
        }
        ids.Add(Tokenizer.Sep);
        if (ids.Count > Model.MaxSequence) throw new ArgumentException($"sentence too long for the model ({ids.Count} tokens): {sentence}");
        return ([.. ids], spans);
    }

    /// <summary>
    /// For each (sentence, word index): the mean over the word's pieces of the last hidden state, in float64.
    /// A word with no pieces (punctuation removed by the tokenizer) is an ArgumentException.
    /// </summary>
    public double[][] Embed(IReadOnlyList<(string Sentence, int Word)> items) =>
        [.. EmbedWords([.. items.Select(it => (it.Sentence, new[] { it.Word }))]).Select(v => v[0])];

    /// <summary>Several words of each sentence from one forward pass: result[i][j] is word <c>Words[j]</c> of sentence i.</summary>
    public double[][][] EmbedWords(IReadOnlyList<(string Sentence, int[] Words)> items)
    {
        var enc = items.Select(it => Encode(it.Sentence)).ToArray();
        int C = Model.Config.HiddenSize;
        var result = new double[items.Count][][];
        var order = Enumerable.Range(0, items.Count).OrderBy(i => enc[i].Ids.Length).ToArray();
        for (int start = 0; start < order.Length; start += BatchSize)
        {
            int B = Math.Min(BatchSize, order.Length - start);
            var idx = order.AsSpan(start, B).ToArray();
            var (ids, mask, T) = SentenceEmbedder<F>.Pad([.. idx.Select(i => enc[i].Ids)], Tokenizer.Pad);
            Model.Forward(ids, null, B, T, null, mask);
            var h = Model.Hidden.Data;
            for (int b = 0; b < B; b++)
            {
                int i = idx[b];
                result[i] = new double[items[i].Words.Length][];
                for (int w = 0; w < items[i].Words.Length; w++)
                {
                    int word = items[i].Words[w];
                    if ((uint)word >= (uint)enc[i].Spans.Length) throw new ArgumentException($"word {word} of '{items[i].Sentence}' does not exist");
                    var (s, e) = enc[i].Spans[word];
                    if (e <= s) throw new ArgumentException($"word {word} of '{items[i].Sentence}' has no word pieces");
                    var v = new double[C];
                    for (int t = s; t < e; t++)
                        for (int c = 0; c < C; c++) v[c] += double.CreateTruncating(h[(b * T + t) * C + c]) / (e - s);
                    result[i][w] = v;
                }
            }
        }
        return result;
    }
}
