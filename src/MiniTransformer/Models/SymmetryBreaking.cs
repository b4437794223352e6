using System.Globalization;
using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniTransformer.Backends;
using MiniTransformer.Data;
using MiniTransformer.Tensors;

namespace MiniTransformer.Models;

/// <summary>The MLP's activation: GELU (the GPT-2/BERT default) or PReLU with learnable per-feature negative slopes.</summary>
public enum MlpActivation { Gelu, Prelu }

/// <summary>
/// Symmetry breaking by unlearned stochastic attention biases (Silverstein, Kunin &amp; Shyam, arXiv 2601.22257): after
/// the projections q ← q + b_Q and optionally v ← v + b_V, where b_Q (a d_h vector shared by all heads of a layer) is
/// resampled at every training forward as mean_Q + std_Q ⊙ N(0, I); at evaluation b = mean. Defaults as in the paper:
/// mean_Q = 0.5, std_Q = linspace(0.05, 0.15, d_h); b_V: mean 0.5, std 0.05. A key bias is not offered (it cancels in
/// the softmax); a learned bias would not break the symmetry (it co-rotates).
/// Saved in config.json as <c>"symmetry_breaking": {"bq": true, "bq_mean": [...], "bq_std": [...], "bv": ..., ...}</c>.
/// </summary>
public sealed record SymmetryBreakingConfig(bool Bq, bool Bv, double[] BqMean, double[] BqStd, double[] BvMean, double[] BvStd)
{
    /// <summary>The paper's defaults for a head dimension (scalars broadcast; bqStd null → linspace(0.05, 0.15, d_h)).</summary>
    public static SymmetryBreakingConfig Create(int headDim, bool bq, bool bv, double bqMean = 0.5, double? bqStd = null,
        double bvMean = 0.5, double bvStd = 0.05)
    {
        double[] Fill(double v) => Enumerable.Repeat(v, headDim).ToArray();
        double[] std = bqStd is double s ? Fill(s)
            : [.. Enumerable.Range(0, headDim).Select(i => headDim == 1 ? 0.05 : 0.05 + 0.10 * i / (headDim - 1))];
        return new(bq, bv, Fill(bqMean), std, Fill(bvMean), Fill(bvStd));
    }

    public int HeadDim => BqMean.Length;

    public void Validate(string source, int headDim)
    {
        foreach (var (name, a) in new[] { ("bq_mean", BqMean), ("bq_std", BqStd), ("bv_mean", BvMean), ("bv_std", BvStd) })
        {
            if (a.Length != headDim) throw new InputException($"{source}: symmetry_breaking.{name} has {a.Length} entries, expected d_h = {headDim}");
            if (a.Any(x => !double.IsFinite(x))) throw new InputException($"{source}: symmetry_breaking.{name} has a non-finite entry");
        }
        if (BqStd.Concat(BvStd).Any(x => x < 0)) throw new InputException($"{source}: symmetry_breaking std entries must be non-negative");
    }

    public JsonObject ToJson()
    {
        static JsonArray Arr(double[] a) => new([.. a.Select(x => (JsonNode)JsonValue.Create(x))]);
        return new JsonObject
        {
            ["bq"] = Bq, ["bq_mean"] = Arr(BqMean), ["bq_std"] = Arr(BqStd),
            ["bv"] = Bv, ["bv_mean"] = Arr(BvMean), ["bv_std"] = Arr(BvStd),
        };
    }

    public static SymmetryBreakingConfig FromJson(JsonElement e, string source, int headDim)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new InputException($"{source}: 'symmetry_breaking' must be an object");
        bool Bool(string k) => e.TryGetProperty(k, out var v) && v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InputException($"{source}: symmetry_breaking.{k} must be true or false"),
        };
        double[] Vec(string k, double fallback)
        {
            if (!e.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null) return Enumerable.Repeat(fallback, headDim).ToArray();
            if (v.ValueKind == JsonValueKind.Number) return Enumerable.Repeat(v.GetDouble(), headDim).ToArray();
            if (v.ValueKind != JsonValueKind.Array || v.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.Number))
                throw new InputException($"{source}: symmetry_breaking.{k} must be a number or an array of numbers");
            return [.. v.EnumerateArray().Select(x => x.GetDouble())];
        }
        var d = Create(headDim, false, false);
        var cfg = new SymmetryBreakingConfig(Bool("bq"), Bool("bv"), Vec("bq_mean", 0.5),
            e.TryGetProperty("bq_std", out _) ? Vec("bq_std", 0) : d.BqStd, Vec("bv_mean", 0.5), Vec("bv_std", 0.05));
        cfg.Validate(source, headDim);
        return cfg;
    }

    /// <summary>One line for logs, e.g. "b_Q+b_V".</summary>
    public string Describe() => string.Join("+", new[] { Bq ? "b_Q" : null, Bv ? "b_V" : null }.Where(s => s is not null));

    public bool Any => Bq || Bv;

    public static MlpActivation ParseActivation(string? s, string source) => s switch
    {
        null or "gelu" => MlpActivation.Gelu,
        "prelu" => MlpActivation.Prelu,
        _ => throw new InputException($"{source}: mlp_activation '{s}' is not gelu or prelu"),
    };

    public static string Name(MlpActivation a) => a == MlpActivation.Prelu ? "prelu" : "gelu";
}

/// <summary>
/// A model whose forward depends on train/eval mode (the stochastic attention biases). The trainer sets training mode
/// with the index of each training forward (step·grad_accum + micro) before it, and eval mode before evaluating; the
/// sampled biases are a pure function of (seed, forward index, layer), so a resumed run replays them bit for bit.
/// </summary>
public interface IStochasticForward
{
    void SetForwardMode(bool training, int seed, long forwardIndex);
}

/// <summary>Shared train/eval state of one model's stochastic biases (default: eval, i.e. the means).</summary>
public sealed class ForwardMode
{
    public bool Training { get; set; }
    public int Seed { get; set; }
    public long Index { get; set; }
}

/// <summary>The stochastic b_Q / b_V of one attention layer; <see cref="Apply"/> adds them into the packed qkv [N, 3C].</summary>
public sealed class AttentionBiases<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    readonly SymmetryBreakingConfig cfg;
    readonly ForwardMode mode;
    readonly int layer;

    public AttentionBiases(SymmetryBreakingConfig cfg, ForwardMode mode, int layer)
    {
        this.cfg = cfg; this.mode = mode; this.layer = layer;
        LastBq = new double[cfg.HeadDim]; LastBv = new double[cfg.HeadDim];
    }

    public SymmetryBreakingConfig Config => cfg;
    /// <summary>The b_Q and b_V of the last forward (zeros for a disabled one).</summary>
    public double[] LastBq { get; }
    public double[] LastBv { get; }

    /// <summary>b = mean + std ⊙ z, z ~ N(0, I) from a stream keyed by (seed, forward index, layer, which).</summary>
    public static void Sample(double[] dst, double[] mean, double[] std, int seed, long index, int layer, int which)
    {
        var rng = DetRng.From(0x5B1A5, seed, index, layer, which);
        for (int i = 0; i < dst.Length; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            double z = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
            dst[i] = mean[i] + std[i] * z;
        }
    }

    void Current(double[] dst, bool on, double[] mean, double[] std, int which)
    {
        if (!on) { Array.Clear(dst); return; }
        if (mode.Training) Sample(dst, mean, std, mode.Seed, mode.Index, layer, which);
        else Array.Copy(mean, dst, dst.Length);
    }

    /// <summary>q ← q + b_Q (every head), v ← v + b_V: qkv is [N, 3C] packed [q | k | v], heads contiguous. The bias is
    /// not learned, so backward is unchanged. Through the op set, so a device backend adds it where qkv lives.</summary>
    public void Apply(IBackend<F> ops, Tensor<F> qkv, int N, int C, int NH)
    {
        int hs = C / NH;
        Current(LastBq, cfg.Bq, cfg.BqMean, cfg.BqStd, 0);
        Current(LastBv, cfg.Bv, cfg.BvMean, cfg.BvStd, 1);
        var bq = new F[C]; var bv = new F[C];
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < hs; i++) { bq[h * hs + i] = F.CreateTruncating(LastBq[i]); bv[h * hs + i] = F.CreateTruncating(LastBv[i]); }
        if (cfg.Bq) ops.AddToColumns(qkv, bq, N, 3 * C, 0);
        if (cfg.Bv) ops.AddToColumns(qkv, bv, N, 3 * C, 2 * C);
    }
}
