using System.Numerics;
using MiniTransformer.Models;

namespace MiniTransformer.Analysis;

/// <summary>Mean and standard deviation (population, over tokens) of one quantity; NaN when no token had it.</summary>
public readonly record struct MeanStd(double Mean, double Std, int Count)
{
    public static MeanStd Of(IEnumerable<double> values)
    {
        var v = values.Where(double.IsFinite).ToArray();
        if (v.Length == 0) return new(double.NaN, double.NaN, 0);
        double m = v.Average();
        return new(m, Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / v.Length), v.Length);
    }
}

/// <summary>
/// One token's path through the layers, h_0 (the embeddings' output) … h_L (after block L), and its metrics:
/// <list type="bullet">
/// <item>norms ‖h_ℓ‖ (ℓ = 0…L);</item>
/// <item>steps ‖Δ_ℓ‖ = ‖h_{ℓ+1} − h_ℓ‖ (ℓ = 0…L−1), and relative steps ‖Δ_ℓ‖ / ‖h_ℓ‖;</item>
/// <item>turning angles θ_ℓ = ∠(Δ_ℓ, Δ_{ℓ−1}) in degrees (ℓ = 1…L−1; NaN where a step is zero): 0° a straight path,
/// 90° a turn at right angles, 180° a step straight back;</item>
/// <item>energies of the normalised states x_ℓ = h_ℓ / ‖h_ℓ‖: E_ℓ = ½‖x_{ℓ+1} − x_ℓ‖² = 1 − cos(h_ℓ, h_{ℓ+1})
/// (ℓ = 0…L−1), the kinetic energy of a unit-speed-in-time path on the sphere;</item>
/// <item>the spread of E over the layers: the coefficient of variation CV = std_ℓ(E) / mean_ℓ(E) (population) and
/// max_ℓ E / min_ℓ E (∞ when some E_ℓ = 0). An evenly paced path (equal energy per layer) has CV = 0, max/min = 1.</item>
/// </list>
/// </summary>
public sealed class TokenTrajectory
{
    public double[] Norms { get; }
    public double[] Steps { get; }
    public double[] RelativeSteps { get; }
    public double[] Angles { get; }
    public double[] Energies { get; }
    public double EnergyCv { get; }
    public double EnergyMaxOverMin { get; }

    /// <param name="h">h_0 … h_L, each of the model width (at least two states).</param>
    public TokenTrajectory(IReadOnlyList<double[]> h)
    {
        if (h.Count < 2) throw new ArgumentException("a trajectory needs at least two states (h_0 and h_1)");
        int L = h.Count - 1;
        Norms = [.. h.Select(Norm)];
        var delta = Enumerable.Range(0, L).Select(l => Sub(h[l + 1], h[l])).ToArray();
        Steps = [.. delta.Select(Norm)];
        RelativeSteps = [.. Enumerable.Range(0, L).Select(l => Steps[l] / Norms[l])];
        Angles = [.. Enumerable.Range(1, L - 1).Select(l => AngleDegrees(delta[l], delta[l - 1]))];
        Energies = [.. Enumerable.Range(0, L).Select(l =>
        {
            var x0 = Scale(h[l], 1 / Norms[l]);
            var x1 = Scale(h[l + 1], 1 / Norms[l + 1]);
            double n = Norm(Sub(x1, x0));
            return 0.5 * n * n;
        })];
        double mean = Energies.Average();
        EnergyCv = Math.Sqrt(Energies.Sum(e => (e - mean) * (e - mean)) / L) / mean;
        double min = Energies.Min();
        EnergyMaxOverMin = min > 0 ? Energies.Max() / min : double.PositiveInfinity;
    }

    static double Norm(double[] v) { double s = 0; foreach (var x in v) s += x * x; return Math.Sqrt(s); }
    static double[] Sub(double[] a, double[] b) => [.. a.Select((x, i) => x - b[i])];
    static double[] Scale(double[] a, double s) => [.. a.Select(x => x * s)];

    /// <summary>The angle between two vectors in degrees (NaN when either is zero); cos clamped to [−1, 1].</summary>
    public static double AngleDegrees(double[] a, double[] b)
    {
        double na = Norm(a), nb = Norm(b);
        if (na == 0 || nb == 0) return double.NaN;
        double dot = 0;
        for (int i = 0; i < a.Length; i++) dot += a[i] * b[i];
        return Math.Acos(Math.Clamp(dot / (na * nb), -1, 1)) * 180 / Math.PI;
    }
}

/// <summary>Per-layer mean ± std over tokens of every <see cref="TokenTrajectory"/> metric.</summary>
public sealed record TrajectorySummary(int Layers, int Tokens, MeanStd[] Norms, MeanStd[] Steps, MeanStd[] RelativeSteps,
    MeanStd[] Angles, MeanStd[] Energies, MeanStd EnergyCv, MeanStd EnergyMaxOverMin)
{
    public static TrajectorySummary Of(IReadOnlyList<TokenTrajectory> tokens)
    {
        if (tokens.Count == 0) throw new ArgumentException("no tokens");
        int L = tokens[0].Steps.Length;
        if (tokens.Any(t => t.Steps.Length != L)) throw new ArgumentException("tokens of different depths");
        MeanStd[] Per(Func<TokenTrajectory, double[]> f, int n) => [.. Enumerable.Range(0, n).Select(i => MeanStd.Of(tokens.Select(t => f(t)[i])))];
        return new(L, tokens.Count, Per(t => t.Norms, L + 1), Per(t => t.Steps, L), Per(t => t.RelativeSteps, L),
            Per(t => t.Angles, Math.Max(L - 1, 0)), Per(t => t.Energies, L),
            MeanStd.Of(tokens.Select(t => t.EnergyCv)), MeanStd.Of(tokens.Select(t => t.EnergyMaxOverMin)));
    }
}

/// <summary>
/// Hidden-state trajectories of a model: per token, the state after the embeddings (ℓ = 0) and after every block.
/// BERT (post-LN): h_0 = LN_emb(embeddings), h_ℓ = the output of layer ℓ (its last LayerNorm). GPT-2 (pre-LN): the
/// residual stream, h_0 = wte + wpe, h_ℓ = the stream after block ℓ (ln_f is not a block and is left out).
/// </summary>
public static class Trajectory
{
    /// <summary>
    /// Runs one sequence (B = 1; BERT with token type 0 and no padding) and returns its tokens' trajectories, positions
    /// [from, to) (to = T when negative; e.g. 1 and T − 1 leave out BERT's [CLS] and [SEP]).
    /// </summary>
    public static List<TokenTrajectory> Run<F>(ILanguageModel<F> model, int[] ids, int from = 0, int to = -1) where F : unmanaged, IFloatingPointIeee754<F>
    {
        int T = ids.Length;
        if (to < 0) to = T;
        if (T == 0) throw new InputException("an empty sequence has no trajectory");
        if (T > model.MaxSequence) throw new InputException($"a sequence of {T} tokens is longer than the model's context of {model.MaxSequence}");
        model.Forward(ids, null, 1, T);
        var states = States(model);
        int d = states[0].Length / T;
        var list = new List<TokenTrajectory>();
        for (int t = from; t < Math.Min(to, T); t++)
            list.Add(new TokenTrajectory([.. states.Select(s => s.AsSpan(t * d, d).ToArray().Select(x => double.CreateTruncating(x)).ToArray())]));
        return list;
    }

    /// <summary>The per-layer states of the last forward, h_0 … h_L, each [B·T·d] (views of the model's buffers).</summary>
    public static IReadOnlyList<F[]> States<F>(ILanguageModel<F> model) where F : unmanaged, IFloatingPointIeee754<F> => model switch
    {
        Bert<F> b => [b.LnEmb.Y.Data, .. b.Layers.Select(l => l.Output.Data)],
        Gpt2<F> g => [g.Embedded.Data, .. g.Layers.Select(l => l.ResidPost.Data)],
        _ => throw new InputException($"trajectory: architecture '{model.Arch}' is not supported"),
    };
}
