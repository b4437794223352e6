using MiniTransformer.Data;

namespace MiniTransformer.Tests.Data;

public sealed class DataSourceTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static (int[] Inputs, int[] Targets) Batch(IDataSource src, Split split, long index, int b, int t)
    {
        var inputs = new int[b * t];
        var targets = new int[b * t];
        src.GetBatch(split, index, b, t, inputs, targets);
        return (inputs, targets);
    }

    private string SampleText()
    {
        // ~6k characters of varied English-like text.
        var words = new[] { "gauge", "field", "invariance", "the", "of", "symmetry", "a", "transformer", "learns", "tokens",
            "quickly", "and", "slowly", "Hello", "world", "attention", "is", "all", "you", "need" };
        var rng = new Random(3);
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < 1000; i++)
        {
            sb.Append(words[rng.Next(words.Length)]);
            sb.Append(i % 13 == 12 ? ".\n" : " ");
        }
        return sb.ToString();
    }

    private string MakeShards()
    {
        string dir = Path.Combine(_dir.Path, "shards");
        Directory.CreateDirectory(dir);
        MiniTransformer.IO.TokenShard.Write(Path.Combine(dir, "tiny_train_000001.bin"), Enumerable.Range(0, 3000).Select(i => i % 1000).ToArray());
        MiniTransformer.IO.TokenShard.Write(Path.Combine(dir, "tiny_train_000002.bin"), Enumerable.Range(0, 3000).Select(i => 1000 + i % 1000).ToArray());
        MiniTransformer.IO.TokenShard.Write(Path.Combine(dir, "tiny_val_000000.bin"), Enumerable.Range(0, 2000).Select(i => 40000 + i).ToArray());
        File.WriteAllText(Path.Combine(dir, "notes.txt"), "not a shard");
        return Path.Combine(dir, "tiny_*.bin");
    }

    private IDataSource Create(string kind) => kind switch
    {
        "text" => DataSources.Create("text:" + _dir.File("t.txt", SampleText()), 5),
        "chars" => DataSources.Create("chars:" + _dir.File("c.txt", SampleText()), 5),
        "shards" => DataSources.Create("shards:" + MakeShards(), 5),
        _ => DataSources.Create(kind, 5),
    };

    public static TheoryData<string> AllKinds => ["synthetic:induction", "synthetic:cfg", "synthetic:bio", "text", "chars", "shards"];

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void BatchesArePureFunctionsOfTheirArguments(string kind)
    {
        var a = Create(kind);
        var b = Create(kind); // a second instance with the same seed replays the data exactly
        foreach (var split in new[] { Split.Train, Split.Val })
        {
            var x = Batch(a, split, 7, 3, 32);
            var y = Batch(b, split, 7, 3, 32);
            var again = Batch(a, split, 7, 3, 32);
            Assert.Equal(x.Inputs, y.Inputs);
            Assert.Equal(x.Targets, y.Targets);
            Assert.Equal(x.Inputs, again.Inputs);
            Assert.Equal(x.Targets, again.Targets);
            Assert.NotEqual(x.Inputs, Batch(a, split, 8, 3, 32).Inputs);
            Assert.All(x.Inputs, id => Assert.InRange(id, 0, a.VocabSize - 1));
            Assert.All(x.Targets, id => Assert.True(id == DataSources.Ignore || (id >= 0 && id < a.VocabSize)));
        }
        Assert.NotEqual(Batch(a, Split.Train, 7, 3, 32).Inputs, Batch(a, Split.Val, 7, 3, 32).Inputs);
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void DifferentSeedsGiveDifferentData(string kind)
    {
        var a = Create(kind);
        var b = kind.StartsWith("synthetic", StringComparison.Ordinal)
            ? DataSources.Create(kind, 6)
            : DataSources.Create(a.Spec, 6);
        Assert.NotEqual(Batch(a, Split.Train, 0, 2, 32).Inputs, Batch(b, Split.Train, 0, 2, 32).Inputs);
    }

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void DescribeAndPromptsAreUsable(string kind)
    {
        var src = Create(kind);
        Assert.Contains("val accuracy", src.Describe(), StringComparison.Ordinal);
        Assert.DoesNotContain('\n', src.Describe());
        var prompts = src.SamplePrompts(4);
        Assert.Equal(4, prompts.Count);
        Assert.Equal(prompts, src.SamplePrompts(4));
        foreach (string p in prompts)
        {
            Assert.NotEmpty(src.Tokenizer.Encode(p));
        }
    }

    [Theory]
    [InlineData("text")]
    [InlineData("chars")]
    [InlineData("shards")]
    public void TargetsAreTheNextTokenEverywhere(string kind)
    {
        var src = Create(kind);
        foreach (var split in new[] { Split.Train, Split.Val })
        {
            const int b = 4, t = 48;
            var (inputs, targets) = Batch(src, split, 3, b, t);
            Assert.DoesNotContain(DataSources.Ignore, targets);
            for (int r = 0; r < b; r++)
                for (int i = 0; i < t - 1; i++)
                    Assert.Equal(inputs[r * t + i + 1], targets[r * t + i]);
        }
    }

    [Fact]
    public void TextValSplitIsTheLastTenPercent()
    {
        string text = SampleText();
        var src = DataSources.Create("text:" + _dir.File("t.txt", text), 1);
        int[] all = src.Tokenizer.Encode(text);
        int[] val = all[^(all.Length / 10)..];
        const int t = 16;
        var (inputs, targets) = Batch(src, Split.Val, 0, 8, t);
        for (int r = 0; r < 8; r++)
        {
            int[] window = [.. inputs.AsSpan(r * t, t).ToArray(), targets[r * t + t - 1]];
            Assert.True(IndexOf(val, window) >= 0, "val window not found in the last 10% of tokens");
        }
    }

    private static int IndexOf(int[] haystack, int[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    [Fact]
    public void Gpt2EncodesTheReferenceSentence()
    {
        var tok = Gpt2Tokenizer.Instance;
        int[] ids = tok.Encode("Hello world, gauge invariance!");
        Assert.Equal([15496, 995, 11, 18266, 25275, 590, 0], ids);
        Assert.Equal("Hello world, gauge invariance!", tok.Decode(ids));
        Assert.Equal(50257, tok.VocabSize);
        Assert.Equal(50256, tok.EndOfText);
    }

    [Fact]
    public void CharVocabularyIsSortedDistinctCharactersAndRoundTrips()
    {
        string text = "hello, Wörld!\nzebra 42";
        var src = DataSources.Create("chars:" + _dir.File("c.txt", text + text + text + text), 0);
        var tok = Assert.IsType<CharTokenizer>(src.Tokenizer);
        Assert.Equal(new string([.. text.Distinct().Order()]), tok.Alphabet);
        Assert.Equal(tok.Alphabet.Length, src.VocabSize);
        Assert.Null(tok.EndOfText);
        Assert.Equal(text, tok.Decode(tok.Encode(text)));
        var e = Assert.Throws<InputException>(() => tok.Encode("hello Q"));
        Assert.Contains("'Q'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ShardsUseValNamedFilesForVal()
    {
        var src = (TokenStreamSource)Create("shards");
        Assert.Equal(50257, src.VocabSize);
        Assert.Equal(6000, src.TrainTokens);
        Assert.Equal(2000, src.ValTokens);
        var (valIn, _) = Batch(src, Split.Val, 0, 4, 64);
        Assert.All(valIn, id => Assert.InRange(id, 40000, 41999));
        var (trainIn, _) = Batch(src, Split.Train, 0, 16, 64);
        Assert.All(trainIn, id => Assert.InRange(id, 0, 1999));
        // A window never crosses from one shard into the next: each row lies inside one shard's id range.
        for (int r = 0; r < 16; r++)
        {
            var row = trainIn.AsSpan(r * 64, 64).ToArray();
            Assert.True(row.All(id => id < 1000) || row.All(id => id >= 1000));
        }
    }

    [Fact]
    public void WithoutValNamesTheLastShardIsVal()
    {
        string dir = Path.Combine(_dir.Path, "plain");
        Directory.CreateDirectory(dir);
        MiniTransformer.IO.TokenShard.Write(Path.Combine(dir, "a.bin"), Enumerable.Repeat(1, 500).ToArray());
        MiniTransformer.IO.TokenShard.Write(Path.Combine(dir, "b.bin"), Enumerable.Repeat(2, 500).ToArray());
        var src = DataSources.Create("shards:" + Path.Combine(dir, "*.bin"), 0);
        Assert.All(Batch(src, Split.Train, 0, 2, 8).Inputs, id => Assert.Equal(1, id));
        Assert.All(Batch(src, Split.Val, 0, 2, 8).Inputs, id => Assert.Equal(2, id));
    }

    [Theory]
    [InlineData("")]
    [InlineData("synthetic")]
    [InlineData("synthetic:nonsense")]
    [InlineData("wikipedia")]
    [InlineData("text:")]
    [InlineData("text:/definitely/not/here.txt")]
    [InlineData("chars:/definitely/not/here.txt")]
    [InlineData("shards:/definitely/not/here/*.bin")]
    public void BadSpecsAreInputErrors(string spec)
    {
        var e = Assert.Throws<InputException>(() => DataSources.Create(spec, 0));
        Assert.NotEmpty(e.Message);
        if (spec.Length > 0) Assert.Contains(spec, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingAndBadFilesAreInputErrors()
    {
        var e = Assert.Throws<InputException>(() => DataSources.Create("shards:" + Path.Combine(_dir.Path, "*.bin"), 0));
        Assert.Contains("no files", e.Message, StringComparison.Ordinal);
        _dir.File("bad.bin", new string('x', 2000));
        e = Assert.Throws<InputException>(() => DataSources.Create("shards:" + Path.Combine(_dir.Path, "*.bin"), 0));
        Assert.Contains("bad.bin", e.Message, StringComparison.Ordinal);
        string empty = _dir.File("empty.txt", "");
        e = Assert.Throws<InputException>(() => DataSources.Create("text:" + empty, 0));
        Assert.Contains("empty", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("text")]
    [InlineData("chars")]
    public void TooShortTextIsAnInputError(string kind)
    {
        string path = _dir.File("short.txt", "A short file with only a few dozen tokens in it, which is far too little for a long sequence.");
        var src = DataSources.Create($"{kind}:{path}", 0);
        var e = Assert.Throws<InputException>(() => Batch(src, Split.Train, 0, 1, 4096));
        Assert.Contains("4097", e.Message, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Throws<InputException>(() => Batch(src, Split.Val, 0, 1, 64));
    }

    [Fact]
    public void BufferAndArgumentChecks()
    {
        var src = DataSources.Create("synthetic:cfg", 0);
        Assert.Throws<ArgumentException>(() => src.GetBatch(Split.Train, 0, 2, 8, new int[15], new int[16]));
        Assert.Throws<ArgumentOutOfRangeException>(() => src.GetBatch(Split.Train, -1, 2, 8, new int[16], new int[16]));
        Assert.Throws<ArgumentOutOfRangeException>(() => src.GetBatch(Split.Train, 0, 0, 8, new int[16], new int[16]));
    }
}
