using System.Numerics;

namespace MiniTransformer.Tests;

/// <summary>The project's error measure: ‖ours − ref‖ / max(‖ref‖, 1e-3·S), S the largest reference norm compared together.</summary>
public static class Numerics
{
    public static double Norm<T>(ReadOnlySpan<T> x) where T : INumberBase<T>
    {
        double s = 0;
        foreach (var v in x) { double d = double.CreateTruncating(v); s += d * d; }
        return Math.Sqrt(s);
    }

    public static double RelError<A, B>(ReadOnlySpan<A> ours, ReadOnlySpan<B> reference, double S)
        where A : INumberBase<A> where B : INumberBase<B>
    {
        Assert.Equal(reference.Length, ours.Length);
        double diff = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double d = double.CreateTruncating(ours[i]) - double.CreateTruncating(reference[i]);
            diff += d * d;
        }
        return Math.Sqrt(diff) / Math.Max(Norm(reference), 1e-3 * S);
    }

    /// <summary>Asserts every (ours, ref) pair is within tol, S taken over all reference tensors of the group.</summary>
    public static void AssertClose(IReadOnlyList<(string Name, double[] Ours, double[] Ref)> group, double tol)
    {
        double S = group.Max(g => Norm<double>(g.Ref));
        var failures = group.Select(g => (g.Name, Err: RelError<double, double>(g.Ours, g.Ref, S)))
            .Where(x => !(x.Err < tol)).ToList();
        Assert.True(failures.Count == 0, "relative error above " + tol + ": " +
            string.Join(", ", failures.Select(f => $"{f.Name}={f.Err:E2}")));
    }

    public static double[] ToDoubles<T>(ReadOnlySpan<T> x) where T : INumberBase<T>
    {
        var d = new double[x.Length];
        for (int i = 0; i < d.Length; i++) d[i] = double.CreateTruncating(x[i]);
        return d;
    }
}
