using System.Text.Json.Nodes;

namespace MiniTransformer.Tests.Backends;

/// <summary>
/// A smoke of the bench entry points (no timing is asserted: benchmarks do not belong in the unit tests): each command
/// runs in-process at a tiny size and prints the JSON keys that bench/compare/ and the README rely on.
/// </summary>
[Collection("cli")]
public sealed class BenchSmokeTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => InProcessCli.Run(args);

    [Fact]
    public void Bench_train_json_has_the_contract_keys()
    {
        var (code, output, err) = Run("bench", "train", "--preset", "demo", "--batch", "2", "--seq", "8", "--steps", "1", "--warmup", "0", "--json");
        Assert.True(code == 0, err);
        var o = JsonNode.Parse(output.Trim().Split('\n')[^1])!.AsObject();
        foreach (var k in new[] { "ms_per_step", "tokens_per_s", "peak_bytes", "ms_per_step_median", "forward_ms", "gflops" })
            Assert.True(o.ContainsKey(k), $"missing {k} in {output}");
        Assert.True(o["ms_per_step"]!.GetValue<double>() > 0);
        Assert.True(o["peak_bytes"]!.GetValue<long>() > 0);
    }

    [Fact]
    public void Bench_train_profile_lists_op_families()
    {
        var (code, output, err) = Run("bench", "train", "--preset", "demo", "--batch", "2", "--seq", "8", "--steps", "1", "--warmup", "0", "--json", "--profile");
        Assert.True(code == 0, err);
        var p = JsonNode.Parse(output.Trim().Split('\n')[^1])!["profile_ms_per_step"]!.AsObject();
        Assert.Contains("attention.fwd", p.Select(kv => kv.Key));
    }

    [Theory]
    [InlineData("f32")]
    [InlineData("f64")]
    public void Bench_matmul_json_has_gflops(string dtype)
    {
        var (code, output, err) = Run("bench", "matmul", "--n", "64", "--reps", "2", "--dtype", dtype, "--json");
        Assert.True(code == 0, err);
        var o = JsonNode.Parse(output.Trim())!.AsObject();
        Assert.True(o["gflops"]!.GetValue<double>() > 0);
        Assert.Equal(dtype, o["dtype"]!.GetValue<string>());
    }

    [Fact]
    public void Bench_matmul_rejects_a_bad_size()
    {
        var (code, _, err) = Run("bench", "matmul", "--n", "0");
        Assert.Equal(2, code);
        Assert.StartsWith("error:", err.Trim());
        Assert.Contains("--n", err);
    }
}
