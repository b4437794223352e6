using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Models;

namespace MiniTransformer.Gauge;

/// <summary>
/// A model's parameters as float64 arrays, in the model's own order and layouts (Hugging Face names). Gauge
/// transformations act on a <see cref="ParamSet"/>; tangent vectors of the gauge orbits are ParamSets too (same
/// shapes), flattened in parameter order for the Jacobian.
/// </summary>
public sealed class ParamSet
{
    readonly Dictionary<string, int> index;

    public ParamSet(IReadOnlyList<string> names, IReadOnlyList<int[]> shapes, IReadOnlyList<double[]> data)
    {
        Names = [.. names];
        Shapes = [.. shapes];
        Data = [.. data];
        index = new Dictionary<string, int>();
        Offsets = new int[Names.Length];
        int off = 0;
        for (int i = 0; i < Names.Length; i++) { index[Names[i]] = i; Offsets[i] = off; off += Data[i].Length; }
        Count = off;
    }

    public string[] Names { get; }
    public int[][] Shapes { get; }
    public double[][] Data { get; }
    /// <summary>Offset of each tensor in the flattened vector.</summary>
    public int[] Offsets { get; }
    /// <summary>Total number of scalars.</summary>
    public int Count { get; }

    public bool Has(string name) => index.ContainsKey(name);
    public double[] this[string name] => index.TryGetValue(name, out int i) ? Data[i] : throw new KeyNotFoundException($"no parameter '{name}'");
    public int OffsetOf(string name) => Offsets[index[name]];

    public static ParamSet From<F>(IReadOnlyList<Parameter<F>> ps) where F : unmanaged, IFloatingPointIeee754<F> =>
        new([.. ps.Select(p => p.Name)], [.. ps.Select(p => p.Value.Shape.ToArray())],
            [.. ps.Select(p => { var s = p.Value.Span; var d = new double[s.Length]; for (int i = 0; i < d.Length; i++) d[i] = double.CreateTruncating(s[i]); return d; })]);

    /// <summary>Writes the values into the model's parameters (converted to F), matching by name.</summary>
    public void CopyTo<F>(IReadOnlyList<Parameter<F>> ps) where F : unmanaged, IFloatingPointIeee754<F>
    {
        foreach (var p in ps)
        {
            var src = this[p.Name];
            var dst = p.Value.Span;
            if (dst.Length != src.Length) throw new ArgumentException($"parameter '{p.Name}' has {dst.Length} values, set has {src.Length}");
            for (int i = 0; i < src.Length; i++) dst[i] = F.CreateTruncating(src[i]);
        }
    }

    public ParamSet Clone() => new(Names, Shapes, [.. Data.Select(d => (double[])d.Clone())]);
    /// <summary>Zeros with the same names and shapes (a tangent vector).</summary>
    public ParamSet ZerosLike() => new(Names, Shapes, [.. Data.Select(d => new double[d.Length])]);

    public double[] Flatten()
    {
        var v = new double[Count];
        for (int i = 0; i < Data.Length; i++) Data[i].CopyTo(v, Offsets[i]);
        return v;
    }

    public ParamSet Minus(ParamSet other) =>
        new(Names, Shapes, [.. Data.Select((d, i) => d.Select((x, j) => x - other.Data[i][j]).ToArray())]);

    public double Norm() => Math.Sqrt(Data.Sum(d => d.Sum(x => x * x)));

    /// <summary>Name of the parameter holding flat index k (for reports).</summary>
    public string NameAt(int k)
    {
        int i = Array.FindLastIndex(Offsets, o => o <= k);
        return Names[i];
    }
}

/// <summary>
/// A linear map y = x·W + c seen in the notation (W as [in, out]) over a block of output columns
/// [Col0, Col0 + Cols) of a stored weight, whatever its layout (Conv1D [in, out], Linear [out, in], or a tied
/// embedding [V, d] used as the output map). The bias, if any, is the same column block of a [out] vector.
/// </summary>
public sealed record MapRef(string Weight, string? Bias, WeightLayout Layout, int In, int Out, int Col0, int Cols)
{
    public static MapRef Full(string weight, string? bias, WeightLayout layout, int @in, int @out) => new(weight, bias, layout, @in, @out, 0, @out);

    /// <summary>A sub-block of this map's columns: [col0, col0 + cols) relative to this block.</summary>
    public MapRef Sub(int col0, int cols) => this with { Col0 = Col0 + col0, Cols = cols };

    public int Index(int i, int j) => Layout == WeightLayout.InOut ? i * Out + Col0 + j : (Col0 + j) * In + i;
    public double Get(ParamSet p, int i, int j) => p[Weight][Index(i, j)];
    public void Set(ParamSet p, int i, int j, double v) => p[Weight][Index(i, j)] = v;
    public void Add(ParamSet p, int i, int j, double v) => p[Weight][Index(i, j)] += v;
    public bool HasBias => Bias is not null;
    public double GetBias(ParamSet p, int j) => p[Bias!][Col0 + j];
    public void AddBias(ParamSet p, int j, double v) => p[Bias!][Col0 + j] += v;
    public void SetBias(ParamSet p, int j, double v) => p[Bias!][Col0 + j] = v;

    /// <summary>The block as a dense [In, Cols] matrix.</summary>
    public double[,] Matrix(ParamSet p)
    {
        var m = new double[In, Cols];
        for (int i = 0; i < In; i++) for (int j = 0; j < Cols; j++) m[i, j] = Get(p, i, j);
        return m;
    }

    public double[] BiasVector(ParamSet p)
    {
        var b = new double[Cols];
        if (Bias is not null) for (int j = 0; j < Cols; j++) b[j] = GetBias(p, j);
        return b;
    }
}
