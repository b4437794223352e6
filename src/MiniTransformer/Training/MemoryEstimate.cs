using System.Globalization;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using MiniTransformer.Models;

namespace MiniTransformer.Training;

/// <summary>
/// What a training run will hold in memory, estimated before anything large is allocated: parameters, their
/// gradients, the optimizer's moments (AdamW: two per parameter) and the activations a forward + backward keeps
/// at batch B×T. Compared with the memory the runtime may use (<see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>,
/// which honours container limits and <c>DOTNET_GCHeapHardLimit</c>), so a run that cannot fit fails up front with
/// the estimate and the limit instead of running out of memory half-way.
/// </summary>
public sealed record MemoryEstimate(
    long Parameters, int ElementBytes, double ParameterBytes, double GradientBytes, double OptimizerBytes,
    double ActivationBytes, int Batch, int Seq, string OptimizerName)
{
    /// <summary>The sizes of a transformer that the activation estimate needs.</summary>
    public readonly record struct Shape(int Layers, int Dim, int Heads, int Ffn, int Vocab);

    /// <summary>Everything together, in bytes.</summary>
    public double TotalBytes => ParameterBytes + GradientBytes + OptimizerBytes + ActivationBytes;

    /// <summary>Bytes the runtime may use in all (the GC's limit: physical memory, container limit or heap hard limit).</summary>
    public static long AvailableBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>
    /// Activations held during one training step, in elements: per layer the saved LayerNorm outputs and statistics,
    /// q/k/v, the attention pattern [B,H,T,T], heads, sublayer outputs, residual streams, the MLP's pre/post
    /// activations and the backward's scratch; then logits and their gradient [B,T,V].
    /// </summary>
    public static double ActivationElements(Shape s, int batch, int seq)
    {
        double n = (double)batch * seq, c = s.Dim, f = s.Ffn;
        double perLayer = 14 * n * c + 4 * n * f + (double)batch * s.Heads * seq * seq + 4 * n;
        return s.Layers * perLayer + 4 * n * c + 3 * n + 2 * n * s.Vocab;
    }

    /// <summary>The estimate for training a model of <paramref name="parameters"/> parameters and shape <paramref name="shape"/>.</summary>
    public static MemoryEstimate ForTraining(long parameters, Shape shape, int batch, int seq, int elementBytes, OptimizerKind optimizer)
    {
        double p = (double)parameters * elementBytes;
        double moments = optimizer == OptimizerKind.AdamW ? 2 * p : 0;
        return new MemoryEstimate(parameters, elementBytes, p, p, moments,
            ActivationElements(shape, batch, seq) * elementBytes, batch, seq,
            optimizer == OptimizerKind.AdamW ? "AdamW moments" : "SGD state");
    }

    /// <summary>The estimate for training <paramref name="model"/> with <paramref name="config"/> (sizes read from its config.json).</summary>
    public static MemoryEstimate ForModel<F>(ILanguageModel<F> model, TrainConfig config) where F : unmanaged, IFloatingPointIeee754<F>
    {
        long parameters = 0;
        foreach (var p in model.Parameters) parameters += p.Value.Length;
        var shape = ShapeOf(model.ConfigJson) ?? new Shape(0, 0, 0, 0, model.VocabSize);
        return ForTraining(parameters, shape, config.Batch, config.Seq, Unsafe.SizeOf<F>(), config.Opt.Kind);
    }

    /// <summary>Reads layers, width, heads, MLP width and vocabulary from a GPT-2 or BERT config.json; null if it has none of them.</summary>
    public static Shape? ShapeOf(string configJson)
    {
        try
        {
            using var doc = JsonDocument.Parse(configJson);
            var o = doc.RootElement;
            if (o.ValueKind != JsonValueKind.Object) return null;
            int Get(int fallback, params string[] keys)
            {
                foreach (var k in keys)
                    if (o.TryGetProperty(k, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int x)) return x;
                return fallback;
            }
            int d = Get(0, "n_embd", "hidden_size");
            if (d == 0) return null;
            return new Shape(Get(0, "n_layer", "num_hidden_layers"), d, Get(1, "n_head", "num_attention_heads"),
                Get(4 * d, "n_inner", "intermediate_size"), Get(0, "vocab_size"));
        }
        catch (JsonException) { return null; }
    }

    /// <summary>Throws an <see cref="InputException"/> with the estimate and the limit when the run cannot fit.</summary>
    public void EnsureFits(string what, long? availableBytes = null)
    {
        long limit = availableBytes ?? AvailableBytes;
        if (TotalBytes <= limit) return;
        throw new InputException(
            $"{what}: needs an estimated {Bytes(TotalBytes)} (parameters {Bytes(ParameterBytes)} + gradients {Bytes(GradientBytes)} + "
            + $"{OptimizerName} {Bytes(OptimizerBytes)} + activations {Bytes(ActivationBytes)} at batch {Batch}×{Seq}, "
            + $"{Parameters.ToString("N0", CultureInfo.InvariantCulture)} parameters of {ElementBytes} bytes), more than the "
            + $"{Bytes(limit)} this process may use; lower --batch, --seq or the model size");
    }

    /// <summary>
    /// Throws when the parameters alone, stored as float32 (the least this engine stores), exceed the memory the runtime may
    /// use: a config that asks for an absurd model fails before any allocation.
    /// </summary>
    public static void EnsureParametersFit(long parameters, string source, long? availableBytes = null)
    {
        long limit = availableBytes ?? AvailableBytes;
        double bytes = (double)parameters * sizeof(float);
        if (bytes <= limit) return;
        throw new InputException(
            $"{source}: the model has {parameters.ToString("N0", CultureInfo.InvariantCulture)} parameters, an estimated "
            + $"{Bytes(bytes)} as float32 before gradients, optimizer state or activations, more than the {Bytes(limit)} this process may use");
    }

    /// <summary>A byte count for people: "512 KiB", "3.25 GiB".</summary>
    public static string Bytes(double bytes)
    {
        string[] units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        int u = 0;
        while (bytes >= 1024 && u < units.Length - 1) { bytes /= 1024; u++; }
        if (u == units.Length - 1 && bytes >= 1024) return bytes.ToString("E2", CultureInfo.InvariantCulture) + " EiB";
        return (u == 0 ? bytes.ToString("F0", CultureInfo.InvariantCulture) : bytes.ToString("F2", CultureInfo.InvariantCulture)) + " " + units[u];
    }
}
