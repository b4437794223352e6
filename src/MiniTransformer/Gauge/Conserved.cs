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
