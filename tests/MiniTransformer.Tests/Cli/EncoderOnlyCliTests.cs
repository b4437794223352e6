using System.Text.Json.Nodes;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;
using static MiniTransformer.Tests.InProcessCli;

namespace MiniTransformer.Tests.Cli;

/// <summary>
/// <c>mt init --arch bert --encoder-only</c>: a tiny BertModel from the command line, the gauge toolkit on it (numeric
/// count = analytic count + the near-flat scales), and the commands that must refuse it.
/// </summary>
[Collection("cli")]
public sealed class EncoderOnlyCliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-encoder-only-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    string P(string name) => Path.Combine(dir, name);

    string Init(int layers, params string[] extra)
    {
        string[] args = ["init", "--arch", "bert", "--encoder-only", "--layers", layers.ToString(), "--heads", "2", "--dim", "8", "--ffn", "12",
            "--vocab", "11", "--ctx", "6", "--seed", "3", "--out", P("eo"), .. extra];
        var r = Run(args);
        Assert.True(r.Code == 0, r.Err);
        return P("eo");
    }

    [Fact]
    public void Init_writes_a_BertModel_without_the_MLM_head()
    {
        string m = Init(2, "--pooler");
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(m, "config.json")))!;
        Assert.Equal("BertModel", cfg["architectures"]![0]!.GetValue<string>());
        var names = SafeTensors.Read(Path.Combine(m, "model.safetensors")).Tensors.Select(t => t.Name).ToList();
        Assert.DoesNotContain(names, n => n.StartsWith("cls.", StringComparison.Ordinal));
        Assert.Contains("bert.pooler.dense.weight", names);
        var bert = ModelFiles.LoadBert(m, CpuBackend<double>.Instance);
        Assert.False(bert.Config.MlmHead);
        Assert.True(bert.Config.Pooler);
    }

    [Fact]
    public void Gauge_count_numeric_agrees_with_the_analytic_count_and_verify_passes()
    {
        string m = Init(1, "--pooler");
        var count = Run("gauge", "count", "--model", m, "--numeric");
        Assert.True(count.Code == 0, count.Err);
        var analytic = System.Text.RegularExpressions.Regex.Match(count.Out, @"analytic: (\d+) flat");
        Assert.True(analytic.Success, count.Out);
        Assert.Contains("generators: ", count.Out);
        Assert.Contains("all in the null space", count.Out);
        Assert.Matches(@"numeric = analytic( \+ \d+ near-flat)?", count.Out);
        var verify = Run("gauge", "verify", "--model", m, "--dtype", "f64");
        Assert.True(verify.Code == 0, verify.Err);
        Assert.DoesNotContain("NOT invariant", verify.Out, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("embshift", verify.Out);
    }

    [Fact]
    public void Training_an_encoder_only_model_and_an_encoder_only_gpt2_are_refused()
    {
        AssertInputError(Run("init", "--arch", "gpt2", "--encoder-only", "--vocab", "5", "--out", P("g")), "--encoder-only");
        Assert.False(Directory.Exists(P("g")));
        AssertInputError(Run("train", "--arch", "bert", "--encoder-only", "--data", "synthetic:bio", "--steps", "1", "--out", P("t1")), "--encoder-only");
        var r = Run("init", "--arch", "bert", "--encoder-only", "--layers", "1", "--heads", "2", "--dim", "8", "--vocab", "400", "--ctx", "16", "--out", P("big"));
        Assert.Equal(0, r.Code);
        AssertInputError(Run("train", "--model", P("big"), "--data", "synthetic:bio", "--steps", "1", "--seq", "16", "--batch", "2", "--out", P("t2")), "encoder-only");
        Assert.False(Directory.Exists(P("t2")));
    }
}
