using System.Numerics;

namespace MiniTransformer.Models;

/// <summary>Autoregressive sampling: temperature, top-k, greedy at temperature 0. Re-runs the window each token (no KV cache).</summary>
public static class Sampling
{
    public static int[] Generate<F>(ILanguageModel<F> model, int[] prompt, int maxNewTokens, double temperature, int topK,
        int seed, Func<int, bool>? stop = null) where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (prompt.Length == 0) throw new InputException("--prompt: the prompt encodes to no tokens");
        if (temperature < 0 || !double.IsFinite(temperature)) throw new InputException($"--temperature: must be ≥ 0 (got {temperature})");
        var rng = new Random(seed);
        var ids = new List<int>(prompt);
        int V = model.VocabSize;
        var probs = new double[V];
        for (int i = 0; i < maxNewTokens; i++)
        {
            int start = Math.Max(0, ids.Count - model.MaxSequence);
            int[] window = [.. ids.Skip(start)];
            model.Forward(window, null, 1, window.Length);
            var logits = model.Logits.Data.AsSpan((window.Length - 1) * V, V);
            int next;
            if (temperature == 0) next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<F>(logits);
            else
            {
                for (int v = 0; v < V; v++) probs[v] = double.CreateTruncating(logits[v]) / temperature;
                if (topK > 0 && topK < V)
                {
                    double kth = probs.OrderByDescending(x => x).ElementAt(topK - 1);
                    for (int v = 0; v < V; v++) if (probs[v] < kth) probs[v] = double.NegativeInfinity;
                }
                double max = probs.Max(), sum = 0;
                for (int v = 0; v < V; v++) sum += probs[v] = Math.Exp(probs[v] - max);
                double u = rng.NextDouble() * sum;
                next = V - 1;
                for (int v = 0; v < V; v++) { u -= probs[v]; if (u <= 0) { next = v; break; } }
            }
            ids.Add(next);
            if (stop?.Invoke(next) == true) break;
        }
        return [.. ids.Skip(prompt.Length)];
    }
}
