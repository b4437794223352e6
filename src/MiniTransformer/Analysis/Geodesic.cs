namespace MiniTransformer.Analysis;

/// <summary>
/// Geodesics between embedding vectors. The direction moves along the great circle of the unit sphere
/// (spherical linear interpolation, Shoemake 1985):
/// <code>slerp(â, b̂; t) = sin((1−t)θ)/sin θ · â + sin(tθ)/sin θ · b̂,   θ = arccos(â·b̂),</code>
/// which has unit norm and turns at the constant angular speed θ per unit t. The norm is interpolated linearly,
/// ‖x(t)‖ = (1−t)‖a‖ + t‖b‖, so x(0) = a and x(1) = b exactly; nearest neighbours by cosine see only the direction.
/// </summary>
public static class Geodesic
{
    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    public static double Norm(ReadOnlySpan<double> a) => Math.Sqrt(Dot(a, a));

    /// <summary>a / ‖a‖ (an ArgumentException for the zero vector, which has no direction).</summary>
    public static double[] Unit(ReadOnlySpan<double> a)
    {
        double n = Norm(a);
        if (!(n > 0)) throw new ArgumentException("the zero vector has no direction");
        var r = new double[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = a[i] / n;
        return r;
    }

    public static double Cosine(ReadOnlySpan<double> a, ReadOnlySpan<double> b) => Dot(a, b) / (Norm(a) * Norm(b));

    /// <summary>The angle θ ∈ [0, π] between two non-zero vectors (clamped against round-off outside [−1, 1]).</summary>
    public static double Angle(ReadOnlySpan<double> a, ReadOnlySpan<double> b) => Math.Acos(Math.Clamp(Cosine(a, b), -1, 1));

    /// <summary>
    /// slerp(â, b̂; t) for unit vectors u = â, v = b̂ (not checked). For θ below 1e-7 the linear blend, renormalised,
    /// is used (sin θ → 0 there). Antipodal endpoints have no unique great circle: an ArgumentException.
    /// </summary>
    public static double[] Slerp(ReadOnlySpan<double> u, ReadOnlySpan<double> v, double t)
    {
        int n = u.Length;
        if (v.Length != n) throw new ArgumentException($"dimensions differ ({n} vs {v.Length})");
        double c = Math.Clamp(Dot(u, v), -1, 1), theta = Math.Acos(c);
        var r = new double[n];
        if (theta < 1e-7)
        {
            for (int i = 0; i < n; i++) r[i] = (1 - t) * u[i] + t * v[i];
            return Unit(r);
        }
        if (Math.PI - theta < 1e-7) throw new ArgumentException("antipodal vectors: the great circle between them is not unique");
        double s = Math.Sin(theta), wu = Math.Sin((1 - t) * theta) / s, wv = Math.Sin(t * theta) / s;
        for (int i = 0; i < n; i++) r[i] = wu * u[i] + wv * v[i];
        return r;
    }

    /// <summary>One point of a path: t, the angle turned from the start, and the vector x(t).</summary>
    public sealed record Point(double T, double Angle, double[] X);

    /// <summary>
    /// x(t_k) for t_k = k/steps, k = 0..steps: direction slerp(â, b̂; t_k), norm (1−t_k)‖a‖ + t_k‖b‖.
    /// </summary>
    public static Point[] Path(ReadOnlySpan<double> a, ReadOnlySpan<double> b, int steps)
    {
        if (steps < 1) throw new ArgumentException($"steps must be at least 1 (got {steps})");
        double na = Norm(a), nb = Norm(b);
        var u = Unit(a); var v = Unit(b);
        double theta = Angle(u, v);
        var path = new Point[steps + 1];
        for (int k = 0; k <= steps; k++)
        {
            double t = (double)k / steps;
            var x = Slerp(u, v, t);
            double norm = (1 - t) * na + t * nb;
            for (int i = 0; i < x.Length; i++) x[i] *= norm;
            path[k] = new Point(t, t * theta, x);
        }
        return path;
    }
}
