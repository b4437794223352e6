using MiniTransformer.Backends.Cuda;

namespace MiniTransformer.Tests.Cuda;

/// <summary>
/// bf16 storage without a GPU: the host-side conversion the bf16 device copies use (it must round exactly as the
/// kernels' f32_to_bf16 in common.cuh), and the one-line refusals of --dtype bf16 where it cannot run.
/// </summary>
public class Bf16Tests
{
    [Theory]
    [InlineData(1.0f, 0x3F80)]
    [InlineData(-2.0f, 0xC000)]
    [InlineData(0.0f, 0x0000)]
    [InlineData(float.PositiveInfinity, 0x7F80)]
    [InlineData(3.0e38f, 0x7F62)]                   // 3e38 = 0x7F61B1E6: the low half 0xB1E6 > 0x8000 rounds up
    [InlineData(1.00390625f, 0x3F80)]              // 1 + 2⁻⁸: exactly half way between 1 and 1 + 2⁻⁷, ties to even (down)
    [InlineData(1.01171875f, 0x3F82)]              // 1 + 3·2⁻⁸: half way between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: ties to even (up)
    public void FloatToBf16RoundsToNearestEven(float f, int expected)
    {
        Assert.Equal((ushort)expected, BFloat16.FromFloat(f));
    }

    [Fact]
    public void JustAboveHalfWayRoundsUp()
    {
        Assert.Equal((ushort)0x3F81, BFloat16.FromFloat(BitConverter.UInt32BitsToSingle(0x3F808001u)));
        Assert.Equal((ushort)0x3F80, BFloat16.FromFloat(BitConverter.UInt32BitsToSingle(0x3F807FFFu)));
    }

    [Fact]
    public void NaNStaysNaNAndRoundTripIsExactOnBf16Values()
    {
        Assert.True(float.IsNaN(BFloat16.ToFloat(BFloat16.FromFloat(float.NaN))));
        var nanLowBits = BitConverter.UInt32BitsToSingle(0x7F800001u);   // a NaN whose payload is all in the low half
        Assert.True(float.IsNaN(BFloat16.Round(nanLowBits)));
        for (int h = 0; h < 0x10000; h += 7)
        {
            float v = BFloat16.ToFloat((ushort)h);
            if (float.IsNaN(v)) continue;
            Assert.Equal((ushort)h, BFloat16.FromFloat(v));
        }
    }

    [Fact]
    public void RoundingErrorIsAtMostHalfAnUlpOfBf16()
    {
        var rng = new Random(3);
        for (int i = 0; i < 10000; i++)
        {
            float f = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-20, 20)));
            float r = BFloat16.Round(f);
            Assert.True(Math.Abs(r - f) <= Math.Abs(f) * Math.Pow(2, -8), $"{f} → {r}");
        }
    }

    [Theory]
    [InlineData("cpu", "the CPU computes in f32 or f64")]
    public void Bf16OnTheCpuIsRefusedInOneLine(string device, string why)
    {
        var (code, _, err) = InProcessCli.Run("train", "--data", "synthetic:induction", "--dtype", "bf16", "--device", device,
            "--steps", "1", "--out", Path.Combine(Path.GetTempPath(), "mt-bf16-" + Guid.NewGuid().ToString("N")));
        Assert.Equal(2, code);
        Assert.Contains("--dtype bf16", err);
        Assert.Contains(why, err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public void Bf16ElsewhereIsAnUnknownPrecision()
    {
        var (code, _, err) = InProcessCli.Run("gauge", "verify", "--model", "nonexistent-model-dir", "--dtype", "bf16");
        Assert.NotEqual(0, code);
        Assert.Contains("--dtype", err);
    }
}
