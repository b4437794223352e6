using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Models;
using MiniTransformer.Tensors;

namespace MiniTransformer.Training;

public enum OptimizerKind { AdamW, Sgd, Sgdm, Ecd }

/// <summary>Optimizer hyper-parameters. Weight decay applies to matrices and embeddings only (nanoGPT's groups).</summary>
public sealed record OptimizerConfig(
    OptimizerKind Kind = OptimizerKind.AdamW, double Beta1 = 0.9, double Beta2 = 0.95, double Epsilon = 1e-8,
    double WeightDecay = 0.1, double GradClip = 1.0,
    // sgdm: PyTorch SGD with momentum (Nesterov by default; the paper's 0.95). ecd: see Ecd<F> (the paper's defaults;
    // ECD ignores GradClip, and its WeightDecay applies to every tensor, as in the authors' code).
    double Momentum = 0.95, bool Nesterov = true,
    double EcdEta = 100, double EcdF0 = 2.0, double EcdNu = 0, double EcdEps1 = 1e-10, double EcdEps2 = 1e-40);

/// <summary>AdamW (PyTorch's update) or plain SGD over a model's parameters, with global-norm gradient clipping.</summary>
public sealed class Optimizer<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    readonly IBackend<F> ops;
    readonly IReadOnlyList<Parameter<F>> parameters;

    public Optimizer(IReadOnlyList<Parameter<F>> parameters, OptimizerConfig config, IBackend<F> ops)
    {
        this.parameters = parameters; Config = config; this.ops = ops;
        if (config.Kind == OptimizerKind.AdamW)
        {
            M = [.. parameters.Select(p => new Tensor<F>(p.Value.Shape))];
            V = [.. parameters.Select(p => new Tensor<F>(p.Value.Shape))];
        }
        else if (config.Kind == OptimizerKind.Sgdm) M = [.. parameters.Select(p => new Tensor<F>(p.Value.Shape))];
        else if (config.Kind == OptimizerKind.Ecd) { Ecd = new Ecd<F>(parameters, config); M = Ecd.Momenta; }
    }

    /// <summary>The ECD state (kind ecd only): momenta are <see cref="M"/>; skipped steps are counted there.</summary>
    public Ecd<F>? Ecd { get; }
    /// <summary>Scalar optimizer state for the checkpoint metadata (ECD's), and its restore.</summary>
    public Dictionary<string, string> ExtraState() => Ecd?.SaveState() ?? [];
    public void RestoreExtraState(IReadOnlyDictionary<string, string> meta, string source) => Ecd?.RestoreState(meta, source);

    public OptimizerConfig Config { get; }
    /// <summary>Steps taken so far (AdamW's bias correction uses Step + 1 on the next update).</summary>
    public int Step { get; set; }
    /// <summary>First and second moments, one per parameter (AdamW only).</summary>
    public Tensor<F>[] M { get; } = [];
    public Tensor<F>[] V { get; } = [];

    /// <summary>‖g‖₂ over every parameter's gradient (summed in float64 in a fixed order).</summary>
    public double GradNorm() => Math.Sqrt(ops.SumOfSquaresAll([.. parameters.Select(p => p.Grad)]));   // one device readback on CUDA

    // True right after Update, which zeroes every gradient in the same sweep as the update (one pass over the
    // parameters instead of two). ZeroGrad then only has to confirm the gradients are still zero (a read, which exits
    // at the first non-zero element) instead of writing them all again.
    bool gradsZeroed;

    /// <summary>Zeroes every gradient (backward accumulates).</summary>
    public void ZeroGrad()
    {
        if (gradsZeroed && ops is CpuBackend<F> && parameters.All(p => CpuBackend<F>.IsZero(p.Grad)))
        {
            gradsZeroed = false;
            return;
        }
        foreach (var p in parameters) ops.Zero(p.Grad);
        gradsZeroed = false;
    }

    /// <summary>
    /// Clips by global norm (when GradClip &gt; 0) and updates; returns the norm before clipping. Two sweeps: the norm
    /// (read the gradients), then the update fused with zeroing the gradients (so the next <see cref="ZeroGrad"/> is
    /// nearly free). The gradients are therefore zero after this call.
    /// </summary>
    public double Update(double learningRate, double loss = double.NaN)
    {
        if (free is not null) ZeroFixedGrads();   // gauge-fixed: fixed entries carry no gradient (norm and clipping over the free ones)
        double norm = GradNorm();
        if (Ecd is not null)
        {
            // ECD uses the loss of this step (the mean the gradients are of) and no clipping.
            Step++;
            Ecd.Step(learningRate, loss);
            foreach (var p in parameters) ops.Zero(p.Grad);
            gradsZeroed = true;
            return norm;
        }
        double scale = Config.GradClip > 0 && norm > Config.GradClip ? Config.GradClip / norm : 1.0;
        Step++;
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            double wd = p.Decays ? Config.WeightDecay : 0;
            if (free?[i] is int[] fi) { MaskedStep(i, fi, learningRate, wd, scale); continue; }
            if (Config.Kind == OptimizerKind.AdamW)
                ops.AdamWZeroGrad(p.Value, p.Grad, M[i], V[i], new AdamWStep(learningRate, Config.Beta1, Config.Beta2, Config.Epsilon, wd, Step, scale), zeroGrad: true);
            else if (Config.Kind == OptimizerKind.Sgdm)
                ops.SgdMomentumZeroGrad(p.Value, p.Grad, M[i], learningRate, Config.Momentum, Config.Nesterov, wd, scale);
            else
                ops.SgdZeroGrad(p.Value, p.Grad, learningRate, wd, scale, zeroGrad: true);
        }
        gradsZeroed = true;
        return norm;
    }

    // ---------------- gauge-fixed training: state and updates for the free entries only ----------------

    int[]?[]? free;
    int[][]? fixedIdx;
    (int Start, int Compact, int Length)[][]? runs;

    /// <summary>
    /// Restricts the optimizer to the free entries: per parameter null (all free) or the sorted free flat indices. The
    /// moments of a restricted parameter hold only its free entries (none when it is entirely fixed); its fixed entries
    /// never move. AdamW, SGD and SGD with momentum here; ECD restricts its own state (<see cref="Ecd{F}.RestrictTo"/>:
    /// D becomes the free count).
    /// </summary>
    public void RestrictTo(IReadOnlyList<int[]?> freeIndices)
    {
        free = [.. freeIndices];
        Ecd?.RestrictTo(freeIndices);
        fixedIdx = new int[parameters.Count][];
        runs = new (int, int, int)[parameters.Count][];
        for (int i = 0; i < parameters.Count; i++)
        {
            if (free[i] is not int[] fi) { fixedIdx[i] = []; continue; }
            var isFree = new bool[parameters[i].Value.Length];
            foreach (int k in fi) isFree[k] = true;
            fixedIdx[i] = [.. Enumerable.Range(0, isFree.Length).Where(k => !isFree[k])];
            if (Config.Kind == OptimizerKind.AdamW) { M[i] = new Tensor<F>(fi.Length); V[i] = new Tensor<F>(fi.Length); }
            else if (Config.Kind == OptimizerKind.Sgdm) M[i] = new Tensor<F>(fi.Length);
            var list = new List<(int, int, int)>();
            for (int k = 0; k < fi.Length;)
            {
                int e = k + 1;
                while (e < fi.Length && fi[e] == fi[e - 1] + 1) e++;
                list.Add((fi[k], k, e - k));
                k = e;
            }
            runs![i] = [.. list];
        }
    }

    /// <summary>Scalars of optimizer state (moments), for reports.</summary>
    public long StateScalars => M.Sum(t => (long)t.Length) + V.Sum(t => (long)t.Length);

    void ZeroFixedGrads()
    {
        for (int i = 0; i < parameters.Count; i++)
        {
            if (fixedIdx![i].Length == 0) continue;   // (also keeps a device-resident gradient on the device)
            if (ops is IMaskedOptimizerOps<F> dev) { dev.ZeroEntries(parameters[i].Grad, fixedIdx[i]); continue; }
            var g = parameters[i].Grad.Data;
            foreach (int k in fixedIdx![i]) g[k] = F.Zero;
        }
    }

    /// <summary>
    /// The AdamW (PyTorch's formula, as the CPU kernel), SGD or SGD-momentum update on the free entries of parameter i only, run by
    /// run: the free indices form contiguous runs in the tensor and in the compact moments alike, each updated with
    /// SIMD vectors.
    /// </summary>
    void MaskedStep(int i, int[] fi, double lr, double wd, double scale)
    {
        var p = parameters[i];
        if (ops is IMaskedOptimizerOps<F> dev && Config.Kind is OptimizerKind.AdamW or OptimizerKind.Sgd)
        {
            // a device backend (CUDA): the same update on the free entries, where the tensors live
            if (Config.Kind == OptimizerKind.AdamW)
                dev.MaskedAdamW(p.Value, p.Grad, M[i], V[i], fi, new AdamWStep(lr, Config.Beta1, Config.Beta2, Config.Epsilon, wd, Step, scale));
            else dev.MaskedSgd(p.Value, p.Grad, fi, lr, wd, scale);
            ops.Zero(p.Grad);
            return;
        }
        var pv = p.Value.Data; var gv = p.Grad.Data;
        var rs = runs![i];
        F gs = F.CreateTruncating(scale), decay = F.CreateTruncating(1 - lr * wd);
        if (Config.Kind == OptimizerKind.AdamW)
        {
            var m = M[i].Data; var v = V[i].Data;
            F b1 = F.CreateTruncating(Config.Beta1), b2 = F.CreateTruncating(Config.Beta2);
            F omb1 = F.CreateTruncating(1 - Config.Beta1), omb2 = F.CreateTruncating(1 - Config.Beta2);
            F stepSize = F.CreateTruncating(lr / (1 - Math.Pow(Config.Beta1, Step)));
            F invSqrtBc2 = F.CreateTruncating(1 / Math.Sqrt(1 - Math.Pow(Config.Beta2, Step)));
            F eps = F.CreateTruncating(Config.Epsilon);
            Parallelism.For(rs.Length, 64, (lo, hi) =>
            {
                for (int r = lo; r < hi; r++)
                {
                    var (start, compact, len) = rs[r];
                    var ps = pv.AsSpan(start, len); var g = gv.AsSpan(start, len);
                    var ms = m.AsSpan(compact, len); var vs = v.AsSpan(compact, len);
                    int k = 0;
                    if (Vector.IsHardwareAccelerated)
                        for (; k <= len - Vector<F>.Count; k += Vector<F>.Count)
                        {
                            var gk = new Vector<F>(g[k..]) * gs;
                            var mk = new Vector<F>(ms[k..]) * b1 + gk * omb1;
                            var vk = new Vector<F>(vs[k..]) * b2 + gk * gk * omb2;
                            var pk = new Vector<F>(ps[k..]) * decay - stepSize * mk / (Vector.SquareRoot(vk) * invSqrtBc2 + new Vector<F>(eps));
                            mk.CopyTo(ms[k..]); vk.CopyTo(vs[k..]); pk.CopyTo(ps[k..]);
                        }
                    for (; k < len; k++)
                    {
                        F gk = g[k] * gs;
                        ms[k] = b1 * ms[k] + omb1 * gk;
                        vs[k] = b2 * vs[k] + omb2 * gk * gk;
                        ps[k] = ps[k] * decay - stepSize * ms[k] / (F.Sqrt(vs[k]) * invSqrtBc2 + eps);
                    }
                }
            });
        }
        else if (Config.Kind == OptimizerKind.Sgdm)
        {
            // Gather the free entries, take PyTorch's step on them (momentum buffer compact), scatter back.
            var q = new Tensor<F>(fi.Length); var g = new Tensor<F>(fi.Length);
            for (int k = 0; k < fi.Length; k++) { q.Data[k] = pv[fi[k]]; g.Data[k] = gv[fi[k]]; }
            SgdMomentum.Step(q, g, M[i], lr, Config.Momentum, Config.Nesterov, wd, scale);
            for (int k = 0; k < fi.Length; k++) pv[fi[k]] = q.Data[k];
        }
        else
        {
            F st = F.CreateTruncating(-lr * scale);
            Parallelism.For(rs.Length, 64, (lo, hi) =>
            {
                for (int r = lo; r < hi; r++)
                {
                    var (start, _, len) = rs[r];
                    for (int k = start; k < start + len; k++) pv[k] = pv[k] * decay + gv[k] * st;
                }
            });
        }
        ops.Zero(p.Grad);
    }
}
