using MiniTransformer.Analysis;

namespace MiniTransformer.Tests.Analysis;

public sealed class GeodesicTests
{
    static double[] RandomVector(Random r, int n) => [.. Enumerable.Range(0, n).Select(_ => r.NextDouble() * 2 - 1)];

    [Fact]
    public void Slerp_hits_both_endpoints_and_stays_on_the_unit_sphere()
    {
        var r = new Random(7);
        var u = Geodesic.Unit(RandomVector(r, 24));
        var v = Geodesic.Unit(RandomVector(r, 24));
        var s0 = Geodesic.Slerp(u, v, 0);
        var s1 = Geodesic.Slerp(u, v, 1);
        for (int i = 0; i < u.Length; i++)
        {
            Assert.Equal(u[i], s0[i], 1e-14);
            Assert.Equal(v[i], s1[i], 1e-14);
        }
        for (int k = 0; k <= 20; k++) Assert.Equal(1.0, Geodesic.Norm(Geodesic.Slerp(u, v, k / 20.0)), 1e-13);
    }

    [Fact]
    public void Path_turns_at_constant_angular_speed_in_the_plane_of_the_endpoints_and_interpolates_the_norm()
    {
        var r = new Random(3);
        var a = RandomVector(r, 16);
        var b = RandomVector(r, 16);
        for (int i = 0; i < b.Length; i++) b[i] *= 2.5;   // different norms
        double theta = Geodesic.Angle(a, b), na = Geodesic.Norm(a), nb = Geodesic.Norm(b);
        var path = Geodesic.Path(a, b, 8);
        Assert.Equal(9, path.Length);
        for (int k = 0; k < path.Length; k++)
        {
            double t = k / 8.0;
            Assert.Equal(t, path[k].T, 1e-15);
            Assert.Equal(t * theta, path[k].Angle, 1e-12);
            Assert.Equal(t * theta, Geodesic.Angle(a, path[k].X), 1e-7);              // angle from the start
            Assert.Equal((1 - t) * theta, Geodesic.Angle(path[k].X, b), 1e-7);        // and to the end
            Assert.Equal((1 - t) * na + t * nb, Geodesic.Norm(path[k].X), 1e-12);
            if (k > 0) Assert.Equal(theta / 8, Geodesic.Angle(path[k - 1].X, path[k].X), 1e-7);
        }
        for (int i = 0; i < a.Length; i++) { Assert.Equal(a[i], path[0].X[i], 1e-13); Assert.Equal(b[i], path[^1].X[i], 1e-13); }
        // Every point lies in span(a, b): the residual after projecting on an orthonormal basis of it vanishes.
        var e1 = Geodesic.Unit(a);
        var w = b.Select((x, i) => x - Geodesic.Dot(b, e1) * e1[i]).ToArray();
        var e2 = Geodesic.Unit(w);
        foreach (var p in path)
        {
            double c1 = Geodesic.Dot(p.X, e1), c2 = Geodesic.Dot(p.X, e2);
            var res = p.X.Select((x, i) => x - c1 * e1[i] - c2 * e2[i]).ToArray();
            Assert.True(Geodesic.Norm(res) < 1e-12 * Geodesic.Norm(p.X));
        }
    }

    [Fact]
    public void Quarter_turn_in_the_plane_is_cosine_and_sine()
    {
        double[] u = [1, 0, 0], v = [0, 1, 0];
        var m = Geodesic.Slerp(u, v, 1.0 / 3);
        Assert.Equal(Math.Cos(Math.PI / 6), m[0], 1e-15);
        Assert.Equal(Math.Sin(Math.PI / 6), m[1], 1e-15);
        Assert.Equal(0, m[2]);
    }

    [Fact]
    public void Equal_directions_give_a_constant_direction_and_antipodes_are_refused()
    {
        double[] u = [0.6, 0.8];
        var p = Geodesic.Path(u, [1.2, 1.6], 4);
        foreach (var x in p) Assert.Equal(0, Geodesic.Angle(u, x.X), 1e-7);
        Assert.Equal(2.0, Geodesic.Norm(p[^1].X), 1e-14);
        Assert.Throws<ArgumentException>(() => Geodesic.Slerp(u, [-0.6, -0.8], 0.5));
        Assert.Throws<ArgumentException>(() => Geodesic.Unit([0.0, 0.0]));
    }
}
