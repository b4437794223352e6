using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Models;

namespace MiniTransformer.Analysis;

/// <summary>
/// The interpretability measure of arXiv 2601.22257: per layer and head, the cosine between each token's key vector
/// k = x·W_K (x the token's embedding row, as in the authors' analysis; the learned key bias is left out) and the
/// layer's mean query bias ⟨b_Q⟩ (shared by the heads). Tokens whose keys align with ⟨b_Q⟩ receive extra attention
/// from every query; anti-aligned ones are suppressed.
/// </summary>
public static class BqAlignment
{
    public sealed record HeadResult(int Layer, int Head, (int Token, double Cosine)[] Top, (int Token, double Cosine)[] Bottom, double MeanCosine);

    /// <summary>GPT-2: keys from the Conv1D weight [C, 3C] (keys are columns C..2C).</summary>
    public static List<HeadResult> Analyze<F>(Gpt2<F> model, IReadOnlyCollection<int>? tokens, int topK) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var c = model.Config;
        return Analyze(c.SymmetryBreaking, model.Wte.Value.Data, [.. model.Layers.Select(l => l.Attn.Wqkv.Value.Data)], WeightLayout.InOut,
            c.NEmbd, c.NHead, c.VocabSize, tokens, topK);
    }

    /// <summary>BERT: keys from the fused Linear weight [3C, C] (keys are rows C..2C).</summary>
    public static List<HeadResult> Analyze<F>(Bert<F> model, IReadOnlyCollection<int>? tokens, int topK) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var c = model.Config;
        return Analyze(c.SymmetryBreaking, model.Wte.Value.Data, [.. model.Layers.Select(l => l.Attn.Wqkv.Value.Data)], WeightLayout.OutIn,
            c.HiddenSize, c.NumAttentionHeads, c.VocabSize, tokens, topK);
    }

    static List<HeadResult> Analyze<F>(SymmetryBreakingConfig? config, F[] wte, F[][] wqkv, WeightLayout layout, int C, int H, int vocab,
        IReadOnlyCollection<int>? tokens, int topK) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var sb = config is { Bq: true } s ? s : throw new InputException("the model has no b_Q (train it with --symmetry-breaking bq)");
        int hs = C / H;
        var ids = tokens?.ToArray() ?? [.. Enumerable.Range(0, vocab)];
        var bq = sb.BqMean;
        double bqNorm = Math.Sqrt(bq.Sum(x => x * x));
        var results = new List<HeadResult>();
        for (int l = 0; l < wqkv.Length; l++)
        {
            var w = wqkv[l];
            // W_K[i, j] of head h: input feature i, key feature j (j-th output of the key block C + h·hs + j).
            double Wk(int i, int col) => double.CreateTruncating(layout == WeightLayout.InOut ? w[i * 3 * C + col] : w[col * C + i]);
            for (int h = 0; h < H; h++)
            {
                var cos = new (int, double)[ids.Length];
                for (int t = 0; t < ids.Length; t++)
                {
                    int id = ids[t];
                    double dot = 0, kk = 0;
                    for (int j = 0; j < hs; j++)
                    {
                        int col = C + h * hs + j;
                        double k = 0;
                        for (int i = 0; i < C; i++) k += double.CreateTruncating(wte[id * C + i]) * Wk(i, col);
                        dot += k * bq[j]; kk += k * k;
                    }
                    cos[t] = (id, dot / (Math.Sqrt(kk) * bqNorm + 1e-30));
                }
                var sorted = cos.OrderByDescending(c => c.Item2).ToArray();
                results.Add(new HeadResult(l, h, sorted.Take(topK).ToArray(), sorted.Reverse().Take(topK).ToArray(), cos.Average(c => c.Item2)));
            }
        }
        return results;
    }
}
