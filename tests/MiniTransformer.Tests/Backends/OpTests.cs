using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Tensors;
using Xunit.Abstractions;
using static MiniTransformer.Tests.Backends.OpTestUtil;

namespace MiniTransformer.Tests.Backends;

/// <summary>
/// Every op of the op set (<see cref="IBackend{F}"/>) on the CPU backend: float64 backward vs central finite
/// differences, float32 vs float64, backward accumulation, forward overwrite (outputs pre-filled with NaN),
/// determinism, and the optimizers vs a scalar float64 reimplementation of PyTorch's formulas.
/// </summary>
public class OpTests(ITestOutputHelper output)
{
    // ---------------------------------------------------------------- the cases

    /// <summary>Cases checked by finite differences (small: odd and even shapes, T = 1 for attention).</summary>
    static readonly Dictionary<string, Func<OpCase>> Small = new()
    {
        // embedding: B, T, C, V (V < B·T so ids repeat), token types: 0 none, 1 types given, 2 table but no types
        ["embedding B2 T5 C13 V7 wtt"] = () => new EmbeddingCase(2, 5, 13, 7, 1),
        ["embedding B2 T5 C13 V7"] = () => new EmbeddingCase(2, 5, 13, 7, 0),
        ["embedding B2 T5 C13 V7 wtt-notypes"] = () => new EmbeddingCase(2, 5, 13, 7, 2),
        ["embedding B2 T16 C64 V11 wtt"] = () => new EmbeddingCase(2, 16, 64, 11, 1),
        // layernorm: N, C
        ["layernorm N7 C13"] = () => new LayerNormCase(7, 13),
        ["layernorm N1 C5"] = () => new LayerNormCase(1, 5),
        ["layernorm N16 C64"] = () => new LayerNormCase(16, 64),
        // matmul: N, K, M, layout, bias
        ["matmul N7 K19 M23 InOut bias"] = () => new MatmulCase(7, 19, 23, WeightLayout.InOut, true),
        ["matmul N7 K19 M23 InOut"] = () => new MatmulCase(7, 19, 23, WeightLayout.InOut, false),
        ["matmul N7 K19 M23 OutIn bias"] = () => new MatmulCase(7, 19, 23, WeightLayout.OutIn, true),
        ["matmul N7 K19 M23 OutIn"] = () => new MatmulCase(7, 19, 23, WeightLayout.OutIn, false),
        ["matmul N1 K5 M3 OutIn bias"] = () => new MatmulCase(1, 5, 3, WeightLayout.OutIn, true),
        ["matmul N16 K64 M128 InOut bias"] = () => new MatmulCase(16, 64, 128, WeightLayout.InOut, true),
        ["matmul N16 K64 M128 OutIn"] = () => new MatmulCase(16, 64, 128, WeightLayout.OutIn, false),
        // attention: B, T, C, NH, causal, key mask (row 0 partial, last row all masked)
        ["attention causal B2 T5 C15 NH3"] = () => new AttentionCase(2, 5, 15, 3, true, false),
        ["attention causal B2 T16 C64 NH4"] = () => new AttentionCase(2, 16, 64, 4, true, false),
        ["attention causal B2 T1 C15 NH3"] = () => new AttentionCase(2, 1, 15, 3, true, false),
        ["attention bidir B2 T5 C15 NH3"] = () => new AttentionCase(2, 5, 15, 3, false, false),
        ["attention bidir masked B3 T5 C15 NH3"] = () => new AttentionCase(3, 5, 15, 3, false, true),
        ["attention bidir masked B3 T16 C64 NH4"] = () => new AttentionCase(3, 16, 64, 4, false, true),
        ["attention bidir masked B3 T1 C15 NH3"] = () => new AttentionCase(3, 1, 15, 3, false, true),
        ["attention causal masked B3 T5 C15 NH3"] = () => new AttentionCase(3, 5, 15, 3, true, true),
        // gelu, residual: n
        ["gelu tanh n23"] = () => new GeluCase(23, GeluForm.Tanh),
        ["gelu erf n23"] = () => new GeluCase(23, GeluForm.Erf),
        ["gelu tanh n128"] = () => new GeluCase(128, GeluForm.Tanh),
        ["gelu erf n128"] = () => new GeluCase(128, GeluForm.Erf),
        ["residual n23"] = () => new ResidualCase(23),
        ["residual n128"] = () => new ResidualCase(128),
        // cross-entropy: N, V (every third row ignored)
        ["crossentropy N7 V29"] = () => new CrossEntropyCase(7, 29),
        ["crossentropy N16 V128"] = () => new CrossEntropyCase(16, 128),
        ["crossentropy N1 V3"] = () => new CrossEntropyCase(1, 3),
    };

    /// <summary>Larger cases (several threads' worth of work): float32 vs float64 and determinism only.</summary>
    static readonly Dictionary<string, Func<OpCase>> Large = new()
    {
        ["embedding B4 T32 C96 V50 wtt"] = () => new EmbeddingCase(4, 32, 96, 50, 1),
        ["layernorm N512 C200"] = () => new LayerNormCase(512, 200),
        ["matmul N64 K96 M200 InOut bias"] = () => new MatmulCase(64, 96, 200, WeightLayout.InOut, true),
        ["matmul N64 K96 M200 OutIn bias"] = () => new MatmulCase(64, 96, 200, WeightLayout.OutIn, true),
        ["attention causal B2 T40 C64 NH4"] = () => new AttentionCase(2, 40, 64, 4, true, false),
        ["attention bidir masked B3 T40 C64 NH4"] = () => new AttentionCase(3, 40, 64, 4, false, true),
        ["gelu tanh n40001"] = () => new GeluCase(40001, GeluForm.Tanh),
        ["gelu erf n40001"] = () => new GeluCase(40001, GeluForm.Erf),
        ["residual n40001"] = () => new ResidualCase(40001),
        ["crossentropy N300 V301"] = () => new CrossEntropyCase(300, 301),
    };

    static OpCase Make(string name) => (Small.TryGetValue(name, out var f) ? f : Large[name])();

    public static TheoryData<string> SmallCases => new(Small.Keys);
    public static TheoryData<string> AllCases => new(Small.Keys.Concat(Large.Keys));

    // ---------------------------------------------------------------- generic checks

    [Theory]
    [MemberData(nameof(SmallCases))]
    public void Float64BackwardMatchesFiniteDifferences(string name)
    {
        var c = Make(name);
        var group = FiniteDifferenceGroup(c, c.FdStep);
        output.WriteLine($"{name}: fd {Describe(Errors(group))}");
        Numerics.AssertClose(group, 1e-6);
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Float32MatchesFloat64(string name)
    {
        var c = Make(name);
        var r64 = c.Run<double>(c.Inputs, 1);
        var r32 = c.Run<float>(c.Inputs, 1);
        var fwd = r64.Outputs.Select(kv => (kv.Key, r32.Outputs[kv.Key], kv.Value)).ToList();
        var bwd = r64.Grads.Select(kv => ("d" + kv.Key, r32.Grads[kv.Key], kv.Value)).ToList();
        output.WriteLine($"{name}: f32 fwd {Describe(Errors(fwd))}; bwd {Describe(Errors(bwd))}");
        Numerics.AssertClose(fwd, 1e-5);
        Numerics.AssertClose(bwd, 1e-5);
    }

    [Theory]
    [MemberData(nameof(SmallCases))]
    public void BackwardAccumulates(string name)
    {
        var c = Make(name);
        var once = c.Run<double>(c.Inputs, 1);
        var twice = c.Run<double>(c.Inputs, 2);
        double k = c.BackwardOverwrites ? 1 : 2;   // cross-entropy's backward overwrites by contract
        var group = once.Grads.Select(kv => (kv.Key, twice.Grads[kv.Key], kv.Value.Select(v => k * v).ToArray())).ToList();
        Numerics.AssertClose(group, 1e-12);
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Float32IsDeterministic(string name)
    {
        var c = Make(name);
        var a = c.Run<float>(c.Inputs, 1);
        var b = c.Run<float>(c.Inputs, 1);
        foreach (var (k, v) in a.Outputs) AssertBitIdentical(k, v, b.Outputs[k]);
        foreach (var (k, v) in a.Grads) AssertBitIdentical("d" + k, v, b.Grads[k]);
    }

    // ---------------------------------------------------------------- op-specific checks

    [Fact]
    public void AttentionFullyMaskedRowGivesZeroOutputAndGradient()
    {
        foreach (bool f32 in new[] { false, true })
        {
            var c = new AttentionCase(3, 5, 15, 3, causal: false, masked: true);
            var r = f32 ? c.Run<float>(c.Inputs, 1) : c.Run<double>(c.Inputs, 1);
            int b = c.B - 1, T = c.T, C = c.C;
            Assert.All(r.Outputs["y"].AsSpan(b * T * C, T * C).ToArray(), v => Assert.Equal(0.0, v));
            Assert.All(r.Outputs["att"].AsSpan(b * c.NH * T * T, c.NH * T * T).ToArray(), v => Assert.Equal(0.0, v));
            Assert.All(r.Grads["qkv"].AsSpan(b * T * 3 * C, T * 3 * C).ToArray(), v => Assert.Equal(0.0, v));
            // masked keys of row 0 receive no attention and no k/v gradient
            for (int t = 0; t < T; t++)
                if (c.Mask[t] == 0)
                {
                    Assert.All(r.Grads["qkv"].AsSpan(t * 3 * C + C, 2 * C).ToArray(), v => Assert.Equal(0.0, v));
                    for (int h = 0; h < c.NH; h++)
                        for (int tq = 0; tq < T; tq++)
                            Assert.Equal(0.0, r.Outputs["att"][(h * T + tq) * T + t]);
                }
            // and probabilities of the other rows sum to one
            for (int bh = 0; bh < (c.B - 1) * c.NH; bh++)
                for (int tq = 0; tq < T; tq++)
                    Assert.Equal(1.0, r.Outputs["att"].AsSpan((bh * T + tq) * T, T).ToArray().Sum(), f32 ? 1e-6 : 1e-14);
        }
    }

    [Fact]
    public void AttentionCausalMasksFutureKeys()
    {
        var c = new AttentionCase(2, 5, 15, 3, causal: true, masked: false);
        var att = c.Run<double>(c.Inputs, 0).Outputs["att"];
        int T = c.T;
        for (int bh = 0; bh < c.B * c.NH; bh++)
            for (int t = 0; t < T; t++)
                for (int t2 = t + 1; t2 < T; t2++)
                    Assert.Equal(0.0, att[(bh * T + t) * T + t2]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CrossEntropyBackwardMayAliasLogits(bool f32)
    {
        if (f32) Check<float>(); else Check<double>();

        static void Check<F>() where F : unmanaged, IFloatingPointIeee754<F>
        {
            var c = new CrossEntropyCase(7, 29);
            var be = CpuBackend<F>.Instance;
            var logits = Tn<F>(c.Inputs["logits"], c.N, c.V);
            var lse = Nan<F>(c.N);
            be.CrossEntropyForward(lse, logits, c.Targets, c.N, c.V);
            var separate = Nan<F>(c.N, c.V);
            be.CrossEntropyBackward(separate, logits, lse, c.Targets, c.N, c.V, c.Scale);
            be.CrossEntropyBackward(logits, logits, lse, c.Targets, c.N, c.V, c.Scale);
            AssertBitIdentical("dlogits", D(separate), D(logits));
        }
    }

    [Fact]
    public void CrossEntropyCountsScoredRows()
    {
        var c = new CrossEntropyCase(7, 29);
        var (sum, count) = CpuBackend<double>.Instance.CrossEntropyForward(new Tensor<double>(c.N),
            Tn<double>(c.Inputs["logits"], c.N, c.V), c.Targets, c.N, c.V);
        Assert.Equal(c.Targets.Count(t => t != -100), count);
        // reference: Σ over scored rows of log Σ exp(z) − z[target]
        double refSum = 0;
        var z = c.Inputs["logits"];
        for (int n = 0; n < c.N; n++)
        {
            if (c.Targets[n] == -100) continue;
            double lse = Math.Log(Enumerable.Range(0, c.V).Sum(j => Math.Exp(z[n * c.V + j])));
            refSum += lse - z[n * c.V + c.Targets[n]];
        }
        Assert.Equal(refSum, sum, 1e-12 * Math.Abs(refSum));
    }

    [Theory]
    [InlineData(WeightLayout.InOut)]
    [InlineData(WeightLayout.OutIn)]
    public void MatmulBackwardWithoutDx(WeightLayout layout)
    {
        var c = new MatmulCase(7, 19, 23, layout, true);
        var be = CpuBackend<double>.Instance;
        var x = Tn<double>(c.Inputs["x"], 7, 19);
        var w = Tn<double>(c.Inputs["w"], c.WShape);
        var dy = Tn<double>(c.W, 7, 23);
        var dW = Zeros<double>(c.WShape);
        var db = Zeros<double>(23);
        be.MatmulBackward(null, dW, db, dy, x, w, 7, 19, 23, layout);
        var full = c.Run<double>(c.Inputs, 1);
        AssertBitIdentical("dW", full.Grads["w"], D(dW));
        AssertBitIdentical("db", full.Grads["b"], D(db));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(40001)]
    public void SumOfSquaresMatchesFloat64Sum(int n)
    {
        var x = Randn(new Random(n), n);
        double reference = 0;
        foreach (double v in x) reference += v * v;   // inputs are float-representable: same values for both
        double s64 = CpuBackend<double>.Instance.SumOfSquares(Tn<double>(x, n));
        double s32 = CpuBackend<float>.Instance.SumOfSquares(Tn<float>(x, n));
        output.WriteLine($"n={n}: f64 rel {Math.Abs(s64 - reference) / reference:E2}, f32 rel {Math.Abs(s32 - reference) / reference:E2}");
        Assert.Equal(reference, s64, 1e-12 * reference);
        Assert.Equal(reference, s32, 1e-5 * reference);
        Assert.Equal(0.0, CpuBackend<float>.Instance.SumOfSquares(new Tensor<float>(0)));
    }

    // ---------------------------------------------------------------- optimizers

    const double Lr = 0.05, Beta1 = 0.9, Beta2 = 0.95, Eps = 1e-8, Wd = 0.1;

    /// <summary>Random gradient with a few exact zeros and a few tiny entries (where ε matters).</summary>
    static double[] OptimizerGrad(Random rng, int n)
    {
        var g = Randn(rng, n);
        for (int i = 0; i < n; i++)
            if (i % 11 == 3) g[i] = 0;
            else if (i % 11 == 7) g[i] = (float)(g[i] * 1e-9);
        return g;
    }

    [Theory]
    [InlineData(1, 1.0)]
    [InlineData(37, 1.0)]
    [InlineData(37, 0.5)]
    [InlineData(40001, 0.25)]
    public void AdamWMatchesPyTorchFormula(int n, double gradScale)
    {
        Check<double>(n, gradScale, 1e-10, 1e-12);
        // float32: Δp = p_new − p_old carries p's own rounding (≈ 2⁻²⁴·‖p‖/‖Δp‖ ≈ 1e-5 relative when lr·|update| ≈ 1e-2),
        // so the update is checked to 1e-4 and the new parameters themselves to 1e-6.
        Check<float>(n, gradScale, 1e-4, 1e-6);

        void Check<F>(int n, double s, double tolUpdate, double tolMoments) where F : unmanaged, IFloatingPointIeee754<F>
        {
            var rng = new Random(n);
            var p = Tn<F>(Randn(rng, n), n);
            var m = Zeros<F>(n);
            var v = Zeros<F>(n);
            for (int step = 1; step <= 3; step++)
            {
                var g = OptimizerGrad(rng, n);
                // reference starts from the kernel's current state, so each step is checked on its own
                double[] p0 = D(p), mRef = D(m), vRef = D(v), pRef = (double[])p0.Clone();
                double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
                for (int i = 0; i < n; i++)
                {
                    double gi = g[i] * s;
                    pRef[i] *= 1 - Lr * Wd;
                    mRef[i] = Beta1 * mRef[i] + (1 - Beta1) * gi;
                    vRef[i] = Beta2 * vRef[i] + (1 - Beta2) * gi * gi;
                    pRef[i] -= Lr / bc1 * mRef[i] / (Math.Sqrt(vRef[i]) / Math.Sqrt(bc2) + Eps);
                }
                CpuBackend<F>.Instance.AdamW(p, Tn<F>(g, n), m, v, new AdamWStep(Lr, Beta1, Beta2, Eps, Wd, step, s));
                if (step == 2) continue;
                var dp = D(p).Select((x, i) => x - p0[i]).ToArray();
                var dpRef = pRef.Select((x, i) => x - p0[i]).ToArray();
                var upd = new List<(string, double[], double[])> { ($"Δp step {step}", dp, dpRef) };
                Numerics.AssertClose([($"p step {step}", D(p), pRef)], Math.Min(tolMoments, 1e-6));
                var mom = new List<(string, double[], double[])> { ($"m step {step}", D(m), mRef), ($"v step {step}", D(v), vRef) };
                output.WriteLine($"{typeof(F).Name} n={n} s={s}: {Describe(Errors(upd))}, {Describe(Errors(mom))}");
                Numerics.AssertClose(upd, tolUpdate);
                Numerics.AssertClose(mom, tolMoments);
                // ε must matter where the gradient is tiny: compare the update there on its own
                if (n > 7)
                {
                    var tiny = Enumerable.Range(0, n).Where(i => i % 11 == 7).ToArray();
                    Numerics.AssertClose([($"Δp(tiny g) step {step}", tiny.Select(i => dp[i]).ToArray(),
                        tiny.Select(i => dpRef[i]).ToArray())], tolUpdate);
                }
            }
        }
    }

    [Theory]
    [InlineData(37, 0.0, 1.0)]
    [InlineData(37, 0.1, 0.5)]
    [InlineData(40001, 0.01, 2.0)]
    public void SgdMatchesPyTorchFormula(int n, double wd, double gradScale)
    {
        Check<double>(1e-12);
        Check<float>(1e-5);

        void Check<F>(double tol) where F : unmanaged, IFloatingPointIeee754<F>
        {
            var rng = new Random(n + 1);
            var p = Tn<F>(Randn(rng, n), n);
            for (int step = 1; step <= 3; step++)
            {
                var g = OptimizerGrad(rng, n);
                var p0 = D(p);
                // torch.optim.SGD (no momentum): g ← s·g + wd·p; p ← p − lr·g
                var dpRef = p0.Select((x, i) => -Lr * (gradScale * g[i] + wd * x)).ToArray();
                CpuBackend<F>.Instance.Sgd(p, Tn<F>(g, n), Lr, wd, gradScale);
                var dp = D(p).Select((x, i) => x - p0[i]).ToArray();
                Numerics.AssertClose([($"{typeof(F).Name} Δp step {step}", dp, dpRef)], tol);
            }
        }
    }
}

// ==================================================================== op cases

sealed class EmbeddingCase : OpCase
{
    readonly int B, T, C, V, Tmax, NT;
    readonly int[] ids, types;
    readonly bool table;
    readonly double[] w;

    /// <param name="typesMode">0: no token-type table; 1: table and types; 2: table, no types (all type 0).</param>
    public EmbeddingCase(int B, int T, int C, int V, int typesMode) : base($"embedding {B} {T} {C} {V} {typesMode}")
    {
        (this.B, this.T, this.C, this.V, Tmax, NT) = (B, T, C, V, T + 3, 3);
        ids = Enumerable.Range(0, B * T).Select(_ => Rng.Next(V)).ToArray();
        ids[^1] = ids[0];   // at least one repeat even if the draws did not give one
        table = typesMode != 0;
        types = typesMode == 1 ? Enumerable.Range(0, B * T).Select(_ => Rng.Next(2)).ToArray() : [];   // row 2 of wtt unused
        Inputs["wte"] = Randn(V * C);
        Inputs["wpe"] = Randn(Tmax * C);   // rows ≥ T unused: zero gradient
        if (table) Inputs["wtt"] = Randn(NT * C);
        w = Randn(B * T * C);
    }

    public override OpResult Run<F>(Dictionary<string, double[]> inp, int backwardCalls)
    {
        var be = CpuBackend<F>.Instance;
        var wte = Tn<F>(inp["wte"], V, C);
        var wpe = Tn<F>(inp["wpe"], Tmax, C);
        var wtt = table ? Tn<F>(inp["wtt"], NT, C) : null;
        var x = Nan<F>(B, T, C);
        be.EmbeddingForward(x, ids, types, wte, wpe, wtt, B, T, C);
        var r = new OpResult { Objective = Terms(w, x) };
        r.Outputs["x"] = D(x);
        if (backwardCalls > 0)
        {
            var dWte = Zeros<F>(V, C);
            var dWpe = Zeros<F>(Tmax, C);
            var dWtt = table ? Zeros<F>(NT, C) : null;
            var dx = Tn<F>(w, B, T, C);
            for (int i = 0; i < backwardCalls; i++) be.EmbeddingBackward(dWte, dWpe, dWtt, dx, ids, types, B, T, C);
            r.Grads["wte"] = D(dWte);
            r.Grads["wpe"] = D(dWpe);
            if (dWtt is not null) r.Grads["wtt"] = D(dWtt);
        }
        return r;
    }
}

sealed class LayerNormCase : OpCase
{
    readonly int N, C;
    readonly double[] w;

    public LayerNormCase(int N, int C) : base($"layernorm {N} {C}")
    {
        (this.N, this.C) = (N, C);
        var x = Randn(N * C);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(x[i] + 0.5 * (i / C % 3));   // nonzero row means
        Inputs["x"] = x;
        Inputs["gamma"] = Randn(C).Select(v => (double)(float)(1 + 0.3 * v)).ToArray();
        Inputs["beta"] = Randn(C, 0.3);
        w = Randn(N * C);
    }

    public override OpResult Run<F>(Dictionary<string, double[]> inp, int backwardCalls)
    {
        var be = CpuBackend<F>.Instance;
        var x = Tn<F>(inp["x"], N, C);
        var gamma = Tn<F>(inp["gamma"], C);
        var beta = Tn<F>(inp["beta"], C);
        var y = Nan<F>(N, C);
        var mean = Nan<F>(N);
        var rstd = Nan<F>(N);
        be.LayerNormForward(y, mean, rstd, x, gamma, beta, N, C, 1e-5);
        var r = new OpResult { Objective = Terms(w, y) };
        r.Outputs["y"] = D(y);
        r.Outputs["mean"] = D(mean);
        r.Outputs["rstd"] = D(rstd);
        if (backwardCalls > 0)
        {
            var dx = Zeros<F>(N, C);
            var dg = Zeros<F>(C);
            var db = Zeros<F>(C);
            var dy = Tn<F>(w, N, C);
            for (int i = 0; i < backwardCalls; i++) be.LayerNormBackward(dx, dg, db, dy, x, gamma, mean, rstd, N, C);
            r.Grads["x"] = D(dx);
            r.Grads["gamma"] = D(dg);
            r.Grads["beta"] = D(db);
        }
        return r;
    }
}

sealed class MatmulCase : OpCase
{
    readonly int N, K, M;
    readonly WeightLayout layout;
    readonly bool bias;
    public double[] W { get; }
    public int[] WShape => layout == WeightLayout.InOut ? [K, M] : [M, K];

    public MatmulCase(int N, int K, int M, WeightLayout layout, bool bias) : base($"matmul {N} {K} {M} {layout} {bias}")
    {
        (this.N, this.K, this.M, this.layout, this.bias) = (N, K, M, layout, bias);
        Inputs["x"] = Randn(N * K);
        Inputs["w"] = Randn(K * M, 1 / Math.Sqrt(K));
        if (bias) Inputs["b"] = Randn(M);
        W = Randn(N * M);
    }

    public override OpResult Run<F>(Dictionary<string, double[]> inp, int backwardCalls)
    {
        var be = CpuBackend<F>.Instance;
        var x = Tn<F>(inp["x"], N, K);
        var w = Tn<F>(inp["w"], WShape);
        var b = bias ? Tn<F>(inp["b"], M) : null;
        var y = Nan<F>(N, M);
        be.MatmulForward(y, x, w, b, N, K, M, layout);
        var r = new OpResult { Objective = Terms(W, y) };
        r.Outputs["y"] = D(y);
        if (backwardCalls > 0)
        {
            var dx = Zeros<F>(N, K);
            var dw = Zeros<F>(WShape);
            var db = bias ? Zeros<F>(M) : null;
            var dy = Tn<F>(W, N, M);
            for (int i = 0; i < backwardCalls; i++) be.MatmulBackward(dx, dw, db, dy, x, w, N, K, M, layout);
            r.Grads["x"] = D(dx);
            r.Grads["w"] = D(dw);
            if (db is not null) r.Grads["b"] = D(db);
        }
        return r;
    }
}

sealed class AttentionCase : OpCase
{
    public int B { get; }
    public int T { get; }
    public int C { get; }
    public int NH { get; }
    readonly bool causal;
    /// <summary>[B,T] key mask (empty when unmasked): row 0 masks keys t ≡ 2 (mod 3), the last row masks every key.</summary>
    public int[] Mask { get; }
    readonly double[] w;

    public AttentionCase(int B, int T, int C, int NH, bool causal, bool masked) : base($"attention {B} {T} {C} {NH} {causal} {masked}")
    {
        (this.B, this.T, this.C, this.NH, this.causal) = (B, T, C, NH, causal);
        Mask = masked
            ? Enumerable.Range(0, B * T).Select(i => i / T == B - 1 ? 0 : i / T == 0 && i % T % 3 == 2 ? 0 : 1).ToArray()
            : [];
        Inputs["qkv"] = Randn(B * T * 3 * C);   // q·k/√hs ~ N(0, 1): modest scores
        w = Randn(B * T * C);
    }

    public override OpResult Run<F>(Dictionary<string, double[]> inp, int backwardCalls)
    {
        var be = CpuBackend<F>.Instance;
        var qkv = Tn<F>(inp["qkv"], B, T, 3 * C);
        var y = Nan<F>(B, T, C);
        var att = Nan<F>(B, NH, T, T);
        var lse = Nan<F>(B, NH, T);
        be.AttentionForward(y, att, lse, qkv, Mask, B, T, C, NH, causal);
        var r = new OpResult { Objective = Terms(w, y) };
        r.Outputs["y"] = D(y);
        r.Outputs["att"] = D(att);
        if (backwardCalls > 0)
        {
            var dqkv = Zeros<F>(B, T, 3 * C);
            var dy = Tn<F>(w, B, T, C);
            for (int i = 0; i < backwardCalls; i++) be.AttentionBackward(dqkv, dy, qkv, y, att, lse, Mask, B, T, C, NH, causal);
            r.Grads["qkv"] = D(dqkv);
        }
        return r;
    }
}

sealed class GeluCase : OpCase
{
    readonly int n;
    readonly GeluForm form;
    readonly double[] w;

    public GeluCase(int n, GeluForm form) : base($"gelu {n} {form}")
    {
        (this.n, this.form) = (n, form);
        Inputs["x"] = Randn(n, 2.0);
        w = Randn(n);
    }

    public override OpResult Run<F>(Dictionary<string, double[]> inp, int backwardCalls)
    {
        var be = CpuBackend<F>.Instance;
        var x = Tn<F>(inp["x"], n);
        var y = Nan<F>(n);
        be.GeluForward(y, x, n, form);
        var r = new OpResult { Objective = Terms(w, y) };
        r.Outputs["y"] = D(y);
        if (backwardCalls > 0)
        {
            var dx = Zeros<F>(n);
            var dy = Tn<F>(w, n);
            for (int i = 0; i < backwardCalls; i++) be.GeluBackward(dx, dy, x, n, form);
            r.Grads["x"] = D(dx);
        }
        return r;
    }
}

sealed class ResidualCase : OpCase
{
    readonly int n;
    readonly double[] w;

    public ResidualCase(int n) : base($"residual {n}")
    {
        this.n = n;
        Inputs["a"] = Randn(n);
        Inputs["b"] = Randn(n);
        w = Randn(n);
    }

    public override OpResult Run<F>(Dictionary<string, double[]> inp, int backwardCalls)
    {
        var be = CpuBackend<F>.Instance;
        var a = Tn<F>(inp["a"], n);
        var b = Tn<F>(inp["b"], n);
        var y = Nan<F>(n);
        be.ResidualForward(y, a, b, n);
        var r = new OpResult { Objective = Terms(w, y) };
        r.Outputs["y"] = D(y);
        if (backwardCalls > 0)
        {
            var da = Zeros<F>(n);
            var db = Zeros<F>(n);
            var dy = Tn<F>(w, n);
            for (int i = 0; i < backwardCalls; i++) be.ResidualBackward(da, db, dy, n);
            r.Grads["a"] = D(da);
            r.Grads["b"] = D(db);
        }
        return r;
    }
}

sealed class CrossEntropyCase : OpCase
{
    public int N { get; }
    public int V { get; }
    /// <summary>Targets, every third row (n ≡ 1 mod 3) ignored (−100).</summary>
    public int[] Targets { get; }
    public double Scale { get; }
    public override bool BackwardOverwrites => true;
    // The objective is one scalar (the loss sum), so its rounding is not confined to the perturbed row: a larger step
    // keeps the finite difference's rounding error well below the (small, ~scale/V) gradient entries.
    public override double FdStep => 1e-5;

    public CrossEntropyCase(int N, int V) : base($"crossentropy {N} {V}")
    {
        (this.N, this.V) = (N, V);
        Targets = Enumerable.Range(0, N).Select(n => n % 3 == 1 ? -100 : Rng.Next(V)).ToArray();
        Scale = 1.0 / Math.Max(1, Targets.Count(t => t != -100));
        Inputs["logits"] = Randn(N * V, 1.5);
    }

    public override OpResult Run<F>(Dictionary<string, double[]> inp, int backwardCalls)
    {
        var be = CpuBackend<F>.Instance;
        var logits = Tn<F>(inp["logits"], N, V);
        var lse = Nan<F>(N);
        var (sum, count) = be.CrossEntropyForward(lse, logits, Targets, N, V);
        var r = new OpResult { Objective = [sum * Scale] };
        r.Outputs["lse"] = D(lse);
        r.Outputs["loss"] = [sum, count];
        if (backwardCalls > 0)
        {
            var d = Nan<F>(N, V);   // overwritten, ignored rows included
            for (int i = 0; i < backwardCalls; i++) be.CrossEntropyBackward(d, logits, lse, Targets, N, V, Scale);
            r.Grads["logits"] = D(d);
        }
        return r;
    }
}
