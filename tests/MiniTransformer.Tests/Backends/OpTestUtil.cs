using System.Numerics;
using MiniTransformer.Tensors;

namespace MiniTransformer.Tests.Backends;

/// <summary>What one run of an op case produced, everything widened to float64.</summary>
public sealed class OpResult
{
    /// <summary>Terms whose sum is the scalar objective L (e.g. wᵢ·yᵢ), kept per term for well-conditioned finite differences.</summary>
    public double[] Objective { get; set; } = [];
    /// <summary>Every forward output (including saved intermediates such as mean/rstd, att, lse).</summary>
    public Dictionary<string, double[]> Outputs { get; } = new();
    /// <summary>Gradient of L w.r.t. each differentiable input, keyed like <see cref="OpCase.Inputs"/>.</summary>
    public Dictionary<string, double[]> Grads { get; } = new();
}

/// <summary>
/// One op at one shape: fixed random inputs (float-representable doubles, so float32 and float64 runs see the same
/// values), a fixed objective weight, and a generic run that does forward (outputs pre-filled with NaN) and
/// <c>backwardCalls</c> backward calls into zero-initialised gradients.
/// </summary>
public abstract class OpCase
{
    protected OpCase(string name)
    {
        Name = name;
        Rng = new Random(OpTestUtil.StableHash(name));
    }

    public string Name { get; }
    protected Random Rng { get; }
    /// <summary>Differentiable inputs and parameters (mutated in place by finite differences).</summary>
    public Dictionary<string, double[]> Inputs { get; } = new();
    /// <summary>True when backward overwrites its gradient (cross-entropy) instead of accumulating.</summary>
    public virtual bool BackwardOverwrites => false;
    /// <summary>Central-difference step.</summary>
    public virtual double FdStep => 1e-6;
    /// <summary>Small enough to check every element by finite differences.</summary>
    public abstract OpResult Run<F>(Dictionary<string, double[]> inputs, int backwardCalls)
        where F : unmanaged, IFloatingPointIeee754<F>;

    protected double[] Randn(int n, double scale = 1.0) => OpTestUtil.Randn(Rng, n, scale);
    public override string ToString() => Name;
}

public static class OpTestUtil
{
    public static int StableHash(string s)
    {
        unchecked
        {
            uint h = 2166136261;
            foreach (char ch in s) h = (h ^ ch) * 16777619;
            return (int)(h & 0x7fffffff);
        }
    }

    /// <summary>Approximately N(0, scale²), rounded to float so both precisions see identical inputs.</summary>
    public static double[] Randn(Random rng, int n, double scale = 1.0)
    {
        var x = new double[n];
        for (int i = 0; i < n; i++)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return x;
    }

    public static Tensor<F> Tn<F>(double[] d, params int[] shape) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var t = new Tensor<F>(shape);
        for (int i = 0; i < d.Length; i++) t.Data[i] = F.CreateTruncating(d[i]);
        return t;
    }

    /// <summary>A tensor filled with NaN: a forward that fails to overwrite an element shows up as NaN.</summary>
    public static Tensor<F> Nan<F>(params int[] shape) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var t = new Tensor<F>(shape);
        t.Data.AsSpan().Fill(F.NaN);
        return t;
    }

    public static Tensor<F> Zeros<F>(params int[] shape) where F : unmanaged, IFloatingPointIeee754<F> => new(shape);

    public static double[] D<F>(Tensor<F> t) where F : unmanaged, IFloatingPointIeee754<F> => Numerics.ToDoubles<F>(t.Data);

    public static double[] Terms<F>(double[] w, Tensor<F> y) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var r = new double[w.Length];
        for (int i = 0; i < w.Length; i++) r[i] = w[i] * double.CreateTruncating(y.Data[i]);
        return r;
    }

    /// <summary>Relative errors per name, with the same measure (and group scale S) as <see cref="Numerics.AssertClose"/>.</summary>
    public static List<(string Name, double Err)> Errors(IReadOnlyList<(string Name, double[] Ours, double[] Ref)> group)
    {
        double S = group.Count == 0 ? 0 : group.Max(g => Numerics.Norm<double>(g.Ref));
        return group.Select(g => (g.Name, Numerics.RelError<double, double>(g.Ours, g.Ref, S))).ToList();
    }

    public static string Describe(IEnumerable<(string Name, double Err)> errs) =>
        string.Join(", ", errs.Select(e => $"{e.Name}={e.Err:E2}"));

    /// <summary>
    /// Central finite differences of L = Σ Objective in float64 vs the analytic gradients: every element of tensors up to
    /// <paramref name="fullLimit"/> elements, otherwise <paramref name="sample"/> random elements. Returns the group.
    /// </summary>
    public static List<(string Name, double[] Ours, double[] Ref)> FiniteDifferenceGroup(OpCase c, double h = 1e-6,
        int fullLimit = 600, int sample = 96)
    {
        var analytic = c.Run<double>(c.Inputs, 1);
        var group = new List<(string, double[], double[])>();
        var rng = new Random(12345);
        foreach (var (name, grad) in analytic.Grads)
        {
            var x = c.Inputs[name];
            int[] idx = x.Length <= fullLimit
                ? Enumerable.Range(0, x.Length).ToArray()
                : Enumerable.Range(0, x.Length).OrderBy(_ => rng.Next()).Take(sample).OrderBy(i => i).ToArray();
            var ours = new double[idx.Length];
            var num = new double[idx.Length];
            for (int k = 0; k < idx.Length; k++)
            {
                int i = idx[k];
                double x0 = x[i];
                x[i] = x0 + h;
                var plus = c.Run<double>(c.Inputs, 0).Objective;
                x[i] = x0 - h;
                var minus = c.Run<double>(c.Inputs, 0).Objective;
                x[i] = x0;
                double s = 0;
                for (int j = 0; j < plus.Length; j++) s += plus[j] - minus[j];
                num[k] = s / (2 * h);
                ours[k] = grad[i];
            }
            group.Add((name, ours, num));
        }
        return group;
    }

    public static void AssertBitIdentical(string what, double[] a, double[] b)
    {
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++)
            if (BitConverter.DoubleToInt64Bits(a[i]) != BitConverter.DoubleToInt64Bits(b[i]))
                Assert.Fail($"{what}[{i}] differs between runs: {a[i]:R} vs {b[i]:R}");
    }
}
