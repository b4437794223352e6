using System.Numerics;
using System.Text.Json.Nodes;
using MiniTransformer.Models;

namespace MiniTransformer.Gauge;

/// <summary>
/// Conserved quantities of gradient flow (Zhao et al., ICLR 2023), per layer and head, from the qk and ov symmetries:
/// C_qk = W̃_Qᵀ·W̃_Q − W̃_Kᵀ·W̃_K and C_ov = W̃_Vᵀ·W̃_V − W_O^h·W_O^hᵀ, W̃ = W with its bias row appended.
/// Under gradient flow (plain SGD as the step goes to zero, no weight decay) they do not move.
/// </summary>
public static class Conserved
{
    /// <summary>All per-head matrices (d_h × d_h each), flattened and concatenated: [qk of every head, then ov of every head].</summary>
    public static double[] Compute(GaugeArch a, ParamSet p)
    {
        var outv = new List<double>();
        foreach (var s in a.Attention)
            for (int h = 0; h < s.Heads; h++)
            {
                int dh = s.HeadDim;
                var q = Augmented(p, s.Q.Sub(h * dh, dh));
                var k = Augmented(p, s.K.Sub(h * dh, dh));
                var v = Augmented(p, s.V.Sub(h * dh, dh));
                var qq = Gram(q); var kk = Gram(k); var vv = Gram(v);
                // W_O^h·W_O^hᵀ: rows h·d_h .. of the output map.
                var oo = new double[dh, dh];
                for (int i = 0; i < dh; i++)
                    for (int j = 0; j < dh; j++)
                    {
                        double x = 0;
                        for (int c = 0; c < s.O.Cols; c++) x += s.O.Get(p, h * dh + i, c) * s.O.Get(p, h * dh + j, c);
                        oo[i, j] = x;
                    }
                for (int i = 0; i < dh; i++) for (int j = 0; j < dh; j++) outv.Add(qq[i, j] - kk[i, j]);
                for (int i = 0; i < dh; i++) for (int j = 0; j < dh; j++) outv.Add(vv[i, j] - oo[i, j]);
            }
        return [.. outv];
    }

    /// <summary>‖C(p) − C(p0)‖ / ‖C(p0)‖.</summary>
    public static double Drift(double[] c0, double[] c)
    {
        double diff = 0, n0 = 0;
        for (int i = 0; i < c0.Length; i++) { diff += (c[i] - c0[i]) * (c[i] - c0[i]); n0 += c0[i] * c0[i]; }
        return Math.Sqrt(diff / Math.Max(n0, double.Epsilon));
    }

    /// <summary>The drift split as <see cref="Compute"/> lays the values out (per layer and head: qk block, then ov block).</summary>
    public static ConservedDrift Drifts(GaugeArch a, double[] c0, double[] c)
    {
        double dq = 0, nq = 0, dv = 0, nv = 0, worst = 0;
        int off = 0;
        foreach (var s in a.Attention)
            for (int h = 0; h < s.Heads; h++)
            {
                int n = s.HeadDim * s.HeadDim;
                double hd = 0, hn = 0;
                for (int part = 0; part < 2; part++)
                    for (int i = 0; i < n; i++, off++)
                    {
                        double e = (c[off] - c0[off]) * (c[off] - c0[off]), z = c0[off] * c0[off];
                        if (part == 0) { dq += e; nq += z; } else { dv += e; nv += z; }
                        hd += e; hn += z;
                    }
                worst = Math.Max(worst, Math.Sqrt(hd / Math.Max(hn, double.Epsilon)));
            }
        return new ConservedDrift(Drift(c0, c), Math.Sqrt(dq / Math.Max(nq, double.Epsilon)), Math.Sqrt(dv / Math.Max(nv, double.Epsilon)), worst);
    }

    static double[,] Augmented(ParamSet p, MapRef m)
    {
        var w = new double[m.In + 1, m.Cols];
        for (int i = 0; i < m.In; i++) for (int j = 0; j < m.Cols; j++) w[i, j] = m.Get(p, i, j);
        if (m.HasBias) for (int j = 0; j < m.Cols; j++) w[m.In, j] = m.GetBias(p, j);
        return w;
    }

    static double[,] Gram(double[,] w)
    {
        int n = w.GetLength(0), m = w.GetLength(1);
        var g = new double[m, m];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++)
            {
                double x = 0;
                for (int r = 0; r < n; r++) x += w[r, i] * w[r, j];
                g[i, j] = x;
            }
        return g;
    }
}

/// <summary>Drift of the conserved quantities from a reference: all heads together, the qk and ov parts, the worst head.</summary>
public sealed record ConservedDrift(double Total, double Qk, double Ov, double MaxHead);

/// <summary>
/// Tracks the conserved quantities during training (<c>mt train --track-conserved</c>): the reference is taken at the
/// start (or read back from <see cref="FileName"/> on resume), and each step's drift ‖C − C₀‖/‖C₀‖ is added to the
/// step's metrics line as <c>conserved_drift</c>, <c>conserved_drift_qk</c>, <c>conserved_drift_ov</c>,
/// <c>conserved_drift_max_head</c>. Only the attention parameters are read.
/// </summary>
public sealed class ConservedTracker<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    public const string FileName = "conserved_init.json";
    readonly GaugeArch arch;
    readonly List<Parameter<F>> attention;
    readonly double[] c0;

    /// <param name="reuse">read C₀ back from the run folder when it is there (a resumed run); otherwise it is (re)written.</param>
    public ConservedTracker(ILanguageModel<F> model, string? runDir = null, bool reuse = false)
    {
        arch = GaugeArch.For(model);
        var names = arch.Attention.SelectMany(s => new[] { s.Q.Weight, s.Q.Bias, s.O.Weight, s.O.Bias }).OfType<string>().ToHashSet();
        attention = [.. model.Parameters.Where(p => names.Contains(p.Name))];
        string? file = runDir is null ? null : Path.Combine(runDir, FileName);
        if (reuse && file is not null && File.Exists(file) && JsonNode.Parse(File.ReadAllText(file))?["c0"] is JsonArray arr)
            c0 = [.. arr.Select(x => x!.GetValue<double>())];
        else
        {
            c0 = Current();
            if (file is not null)
            {
                Directory.CreateDirectory(runDir!);
                File.WriteAllText(file, new JsonObject { ["c0"] = new JsonArray([.. c0.Select(x => (JsonNode)x)]) }.ToJsonString() + "\n");
            }
        }
    }

    public double[] Initial => c0;
    public double[] Current() => Conserved.Compute(arch, ParamSet.From(attention));
    public ConservedDrift Drift() => Conserved.Drifts(arch, c0, Current());

    /// <summary>Adds the drift fields to a metrics line.</summary>
    public void AddTo(JsonObject line)
    {
        var d = Drift();
        line["conserved_drift"] = d.Total;
        line["conserved_drift_qk"] = d.Qk;
        line["conserved_drift_ov"] = d.Ov;
        line["conserved_drift_max_head"] = d.MaxHead;
    }
}
