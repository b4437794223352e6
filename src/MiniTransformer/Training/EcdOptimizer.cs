using System.Globalization;
using System.Numerics;
using MiniTransformer.Data;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Training;

/// <summary>
/// Energy-conserving descent, the q = 1 scaled form (<c>ECD_q1_scaled</c> in the public code of Silverstein, Kunin &amp;
/// Shyam, arXiv 2601.22257), written here from its update rule. Per step, with loss F, offset F₀, Δt = lr/√η,
/// D = total parameter count and the momentum p carried at unit norm (|p| = 1 energy conservation):
/// <code>
///   first step only:  p ← −g / |g|                                  (momenta along minus the gradient)
///   if F − F₀ ≤ ε₂: the step is skipped (no update, state unchanged)
///   p ← p / |p|                                                      (renormalise; skipped if |p|² is within ε₁ of 1)
///   per tensor:  p ← p − [Δt·η·D / (2(D−1))] · (g − p (p·g)) / (F − F₀)
///   θ ← θ + Δt·p      (with the updated, not yet renormalised p)
///   p ← |p|·(p/|p| + ν′z)/|p/|p| + ν′z|,  ν′ = ν/√D, z ~ N(0, I)     (the "bounce"; ν = 0 by default)
/// </code>
/// Weight decay w (0 by default), as in their code, applies to every tensor: g → g + wθ and F → F + ½w|θ|².
/// There is no gradient clipping in ECD. Reductions are in float64 in a fixed order.
/// </summary>
public sealed class Ecd<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    readonly IReadOnlyList<Parameter<F>> parameters;
    readonly OptimizerConfig cfg;

    public Ecd(IReadOnlyList<Parameter<F>> parameters, OptimizerConfig cfg)
    {
        this.parameters = parameters; this.cfg = cfg;
        Momenta = [.. parameters.Select(p => new Tensor<F>(p.Value.Shape))];
        Dim = parameters.Sum(p => (long)p.Value.Length);
        free = new int[]?[parameters.Count];
    }

    /// <summary>One momentum tensor per parameter (compact, free entries only, for a restricted parameter).</summary>
    public Tensor<F>[] Momenta { get; }
    /// <summary>D: the number of coordinates ECD moves (all parameters, or the free entries after <see cref="RestrictTo"/>).</summary>
    public long Dim { get; private set; }
    public bool Initialized { get; private set; }
    /// <summary>|p|² carried to the next step (1 right after initialisation).</summary>
    public double P2 { get; private set; }
    /// <summary>Taken (not skipped) updates so far: the bounce's noise stream index.</summary>
    public long Iteration { get; private set; }
    public int Skipped { get; private set; }
    public bool LastSkipped { get; private set; }

    // Gauge-fixed training: per parameter null (all entries move) or the sorted free flat indices. A restricted
    // parameter's momentum holds only its free entries, and the update runs on them gathered into scratch buffers (so
    // ECD is the same dynamics on the free coordinates, with D = their count; fixed entries never move).
    readonly int[]?[] free;
    F[] qScratch = [], gScratch = [];

    /// <summary>Restricts ECD to the free entries (before the first step): compact momenta, D = the free count.</summary>
    public void RestrictTo(IReadOnlyList<int[]?> freeIndices)
    {
        if (Initialized) throw new InvalidOperationException("ECD: restrict before the first step");
        long dim = 0;
        int most = 0;
        for (int i = 0; i < parameters.Count; i++)
        {
            free[i] = freeIndices[i];
            if (free[i] is int[] fi) { Momenta[i] = new Tensor<F>(fi.Length); most = Math.Max(most, fi.Length); }
            dim += Momenta[i].Length;
        }
        Dim = dim;
        qScratch = new F[most]; gScratch = new F[most];
    }

    /// <summary>The values of parameter i ECD moves: the tensor itself, or its free entries gathered into scratch.</summary>
    Span<F> Values(int i)
    {
        var v = parameters[i].Value.Span;
        if (free[i] is not int[] fi) return v;
        var s = qScratch.AsSpan(0, fi.Length);
        for (int k = 0; k < fi.Length; k++) s[k] = v[fi[k]];
        return s;
    }

    Span<F> Grads(int i)
    {
        var g = parameters[i].Grad.Span;
        if (free[i] is not int[] fi) return g;
        var s = gScratch.AsSpan(0, fi.Length);
        for (int k = 0; k < fi.Length; k++) s[k] = g[fi[k]];
        return s;
    }

    /// <summary>Writes the updated free values back into parameter i (no-op for an unrestricted one).</summary>
    void Store(int i, Span<F> values)
    {
        if (free[i] is not int[] fi) return;
        var v = parameters[i].Value.Span;
        for (int k = 0; k < fi.Length; k++) v[fi[k]] = values[k];
    }

    /// <summary>One step with the loss F of the batch whose gradients are in the parameters; returns false when skipped.</summary>
    public bool Step(double learningRate, double loss)
    {
        double wd = cfg.WeightDecay;
        double q2 = 0;
        if (wd != 0) for (int i = 0; i < parameters.Count; i++) foreach (var x in Values(i)) { double v = double.CreateTruncating(x); q2 += v * v; }
        if (Iteration == 0)   // as their code: (re)initialise until the first update is taken
        {
            double p2init = 0;
            for (int i = 0; i < parameters.Count; i++)
            {
                var g = Grads(i); var m = Momenta[i].Span;
                for (int j = 0; j < m.Length; j++) { double v = -double.CreateTruncating(g[j]); m[j] = F.CreateTruncating(v); p2init += v * v; }
            }
            double s = Math.Sqrt(1 / p2init);
            foreach (var t in Momenta) { var m = t.Span; for (int j = 0; j < m.Length; j++) m[j] = F.CreateTruncating(double.CreateTruncating(m[j]) * s); }
            P2 = 1.0;
            Initialized = true;
        }
        double dt = learningRate / Math.Sqrt(cfg.EcdEta);
        double nu = cfg.EcdNu / Math.Sqrt(Dim);
        double E = loss + 0.5 * wd * q2 - cfg.EcdF0;
        if (!(E > cfg.EcdEps2)) { Skipped++; LastSkipped = true; return false; }
        LastSkipped = false;

        double coef = Math.Abs(1 - P2) < cfg.EcdEps1 || P2 == 0 ? 1.0 : Math.Sqrt(1 / P2);
        double prefactor = -0.5 * dt * cfg.EcdEta * Dim / (Dim - 1);
        double p2 = 0;
        for (int i = 0; i < parameters.Count; i++)
        {
            var g = Grads(i); var m = Momenta[i].Span;
            var q = wd != 0 ? Values(i) : default;
            double dot = 0;
            for (int j = 0; j < m.Length; j++)
            {
                double pj = double.CreateTruncating(m[j]) * coef;
                m[j] = F.CreateTruncating(pj);
                dot += double.CreateTruncating(m[j]) * (double.CreateTruncating(g[j]) + (wd != 0 ? wd * double.CreateTruncating(q[j]) : 0));
            }
            for (int j = 0; j < m.Length; j++)
            {
                double pj = double.CreateTruncating(m[j]);
                double gj = double.CreateTruncating(g[j]) + (wd != 0 ? wd * double.CreateTruncating(q[j]) : 0);
                double v = pj + prefactor / E * (gj - pj * dot);
                m[j] = F.CreateTruncating(v);
                double w = double.CreateTruncating(m[j]);
                p2 += w * w;
            }
        }
        double pnorm = Math.Sqrt(p2), p2new = 0;
        for (int i = 0; i < parameters.Count; i++)
        {
            var q = Values(i); var m = Momenta[i].Span;
            var rng = DetRng.From(0xEC0, Iteration, i);
            for (int j = 0; j < m.Length; j++)
            {
                double pj = double.CreateTruncating(m[j]);
                q[j] = F.CreateTruncating(double.CreateTruncating(q[j]) + dt * pj);
                double z = 0;
                if (nu != 0)
                {
                    double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                    z = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
                }
                m[j] = F.CreateTruncating(pj / pnorm + nu * z);
                double w = double.CreateTruncating(m[j]);
                p2new += w * w;
            }
            Store(i, q);
        }
        double r = Math.Sqrt(p2new);
        foreach (var t in Momenta) { var m = t.Span; for (int j = 0; j < m.Length; j++) m[j] = F.CreateTruncating(pnorm * double.CreateTruncating(m[j]) / r); }
        P2 = pnorm * pnorm;
        Iteration++;
        return true;
    }

    public Dictionary<string, string> SaveState() => new()
    {
        ["ecd_initialized"] = Initialized ? "1" : "0",
        ["ecd_p2"] = P2.ToString("R", CultureInfo.InvariantCulture),
        ["ecd_iteration"] = Iteration.ToString(CultureInfo.InvariantCulture),
        ["ecd_skipped"] = Skipped.ToString(CultureInfo.InvariantCulture),
    };

    public void RestoreState(IReadOnlyDictionary<string, string> meta, string source)
    {
        string Get(string k) => meta.TryGetValue(k, out var v) ? v : throw new InputException($"{source}: metadata has no '{k}' (not an ECD trainer state)");
        Initialized = Get("ecd_initialized") == "1";
        P2 = double.Parse(Get("ecd_p2"), CultureInfo.InvariantCulture);
        Iteration = long.Parse(Get("ecd_iteration"), CultureInfo.InvariantCulture);
        Skipped = int.Parse(Get("ecd_skipped"), CultureInfo.InvariantCulture);
    }
}

/// <summary>PyTorch's SGD with momentum μ (dampening 0), Nesterov when asked: b ← μb + g; step g + μb (Nesterov) or b.</summary>
public static class SgdMomentum
{
    public static void Step<F>(Tensor<F> param, Tensor<F> grad, Tensor<F> buf, double lr, double momentum, bool nesterov,
        double weightDecay, double gradScale) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var q = param.Span; var g = grad.Span; var b = buf.Span;
        for (int j = 0; j < q.Length; j++)
        {
            double gj = double.CreateTruncating(g[j]) * gradScale + weightDecay * double.CreateTruncating(q[j]);
            double bj = momentum * double.CreateTruncating(b[j]) + gj;
            b[j] = F.CreateTruncating(bj);
            double d = nesterov ? gj + momentum * bj : bj;
            q[j] = F.CreateTruncating(double.CreateTruncating(q[j]) - lr * d);
            g[j] = F.Zero;
        }
    }
}
