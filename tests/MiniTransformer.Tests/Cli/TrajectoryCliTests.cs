using static MiniTransformer.Tests.InProcessCli;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Tests.Cli;

/// <summary><c>mt analyze trajectory</c> on tiny models: the report, its random twin, the plots, and bad input.</summary>
[Collection("cli")]
public sealed class TrajectoryCliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-trajectory-cli-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    string P(string name) => Path.Combine(dir, name);

    /// <summary>A GPT-2 with the engine's initialisation at <paramref name="seed"/>, sized for synthetic:induction.</summary>
    string Gpt2(int seed)
    {
        int V = DataSources.Create("synthetic:induction", 1).VocabSize;
        var m = new Gpt2<float>(new Gpt2Config(V, 16, 16, 2, 2, 1e-5, 32, true), CpuBackend<float>.Instance);
        m.InitializeRandom(seed);
        string d = P($"gpt2-{seed}");
        ModelFiles.Save(m, d, StDType.F32);
        return d;
    }

    /// <summary>The report's two per-layer tables of one model: (trained, random).</summary>
    static (string Trained, string Random) Tables(string report)
    {
        int t = report.IndexOf("Trained (pretrained) weights:", StringComparison.Ordinal);
        int r = report.IndexOf("Random weights", t, StringComparison.Ordinal);
        int end = report.IndexOf("## Plots", r, StringComparison.Ordinal);
        string Body(string s) => s[s.IndexOf('|')..s.LastIndexOf('|')];
        return (Body(report[t..r]), Body(report[r..end]));
    }

    [Fact]
    public void A_model_that_is_its_own_random_twin_gives_identical_tables()
    {
        string model = Gpt2(seed: 4);
        var r = InProcessCli.Run("analyze", "trajectory", "--model", model, "--data", "synthetic:induction", "--sequences", "2", "--seq", "8",
            "--seed", "4", "--out", P("out4"));
        Assert.True(r.Code == 0, r.Err);
        string report = File.ReadAllText(P("out4/report.md"));
        Assert.Contains("--seed 4", report);
        Assert.Contains("2 val rows of synthetic:induction (8 tokens each)", report);
        Assert.Contains("| ℓ | ‖h_ℓ‖ |", report);
        var (trained, random) = Tables(report);
        Assert.Equal(trained, random);                 // seed 4 draws exactly the saved weights again
        Assert.Equal(3, trained.Split('\n').Count(l => l.StartsWith("| ", StringComparison.Ordinal) && char.IsDigit(l[2])));   // ℓ = 0, 1, 2
        foreach (var png in new[] { "norm.png", "step.png", "angle.png", "energy.png" })
            Assert.True(new FileInfo(P("out4/" + png)).Length > 1000, png);

        var r5 = InProcessCli.Run("analyze", "trajectory", "--model", model, "--data", "synthetic:induction", "--sequences", "2", "--seq", "8",
            "--seed", "5", "--out", P("out5"));
        Assert.True(r5.Code == 0, r5.Err);
        var (trained5, random5) = Tables(File.ReadAllText(P("out5/report.md")));
        Assert.Equal(trained, trained5);
        Assert.NotEqual(trained5, random5);
    }

    [Fact]
    public void A_wordpiece_bert_reads_sentences_without_cls_and_sep()
    {
        string d = P("bert");
        string[] vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "."];
        var m = new Bert<float>(new BertConfig(vocab.Length, 16, 8, 2, 2, 16, 2, 1e-12), CpuBackend<float>.Instance);
        m.InitializeRandom(1);
        ModelFiles.Save(m, d, StDType.F32);
        File.WriteAllLines(Path.Combine(d, "vocab.txt"), vocab);
        var r = InProcessCli.Run("analyze", "trajectory", "The cat sat on the mat.", "The cat sat.", "--model", d, "--out", P("bert-out"));
        Assert.True(r.Code == 0, r.Err);
        // 7 + 4 word pieces, [CLS] and [SEP] left out of the statistics.
        Assert.Contains("2 given sentences, WordPiece (11 tokens; [CLS] and [SEP] left out); 11 tokens.", File.ReadAllText(P("bert-out/report.md")));
    }

    [Fact]
    public void Bad_input_is_one_error_line()
    {
        AssertInputError(InProcessCli.Run("analyze", "trajectory", "--model", P("absent"), "--out", P("o")), "is not a directory");
        string model = Gpt2(seed: 1);
        AssertInputError(InProcessCli.Run("analyze", "trajectory", "--model", model, "--out", P("o")), "pass --data SPEC");
        AssertInputError(InProcessCli.Run("analyze", "trajectory", "--model", model, "--data", "synthetic:induction", "--seq", "2", "--out", P("o")), "--seq");
        AssertInputError(InProcessCli.Run("analyze", "trajectory", "x", "--file", P("f.txt"), "--model", model, "--out", P("o")), "--file");
        Assert.False(Directory.Exists(P("o")));
    }
}
