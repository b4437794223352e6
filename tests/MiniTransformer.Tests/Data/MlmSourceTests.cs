using MiniTransformer.Data;

namespace MiniTransformer.Tests.Data;

/// <summary>BERT dynamic masking over the data sources, the special-token vocabulary, and the WordPiece tokenizer.</summary>
public class MlmSourceTests
{
    static (int[] In, int[] Tg) Batch(IDataSource s, Split split, long index, int b, int t)
    {
        var inputs = new int[b * t];
        var targets = new int[b * t];
        s.GetBatch(split, index, b, t, inputs, targets);
        return (inputs, targets);
    }

    [Fact]
    public void MaskingFollowsBertsRecipe()
    {
        var inner = DataSources.Create("synthetic:induction", 1);
        var mlm = MlmSources.Create("synthetic:induction", 1);
        var sp = mlm.Tokenizer.Special;
        Assert.Equal(inner.VocabSize + 5, mlm.VocabSize);
        Assert.Equal([26, 27, 28, 29, 30], new[] { sp.Pad, sp.Unk, sp.Cls, sp.Sep, sp.Mask });
        int B = 64, T = 64;
        long chosen = 0, content = 0, masked = 0, kept = 0, random = 0;
        for (int index = 0; index < 8; index++)
        {
            var (rawIn, _) = Batch(inner, Split.Train, index, B, T);
            var (inp, tg) = Batch(mlm, Split.Train, index, B, T);
            for (int b = 0; b < B; b++)
            {
                Assert.Equal(sp.Cls, inp[b * T]);
                Assert.Equal(sp.Sep, inp[b * T + T - 1]);
                Assert.Equal(-100, tg[b * T]);
                Assert.Equal(-100, tg[b * T + T - 1]);
                for (int t = 1; t < T - 1; t++)
                {
                    int orig = rawIn[b * T + t - 1], n = b * T + t;
                    content++;
                    if (tg[n] == -100) { Assert.Equal(orig, inp[n]); continue; }
                    chosen++;
                    Assert.Equal(orig, tg[n]);
                    if (inp[n] == sp.Mask) masked++;
                    else if (inp[n] == orig) kept++;
                    else { random++; Assert.InRange(inp[n], 0, inner.VocabSize - 1); }
                }
            }
        }
        double rate = (double)chosen / content;
        Assert.InRange(rate, 0.14, 0.16);
        Assert.InRange((double)masked / chosen, 0.77, 0.83);
        // a random replacement can equal the original (1/26), so "kept" is a little over 10 %
        Assert.InRange((double)kept / chosen, 0.08, 0.13);
        Assert.InRange((double)random / chosen, 0.07, 0.12);
    }

    [Fact]
    public void BatchesArePureFunctionsOfSeedSplitAndIndex()
    {
        var a = MlmSources.Create("synthetic:cfg", 5);
        var b = MlmSources.Create("synthetic:cfg", 5);
        foreach (var split in new[] { Split.Train, Split.Val })
        {
            var (i1, t1) = Batch(a, split, 3, 4, 20);
            var (i2, t2) = Batch(b, split, 3, 4, 20);
            Assert.Equal(i1, i2);
            Assert.Equal(t1, t2);
        }
        Assert.NotEqual(Batch(a, Split.Train, 3, 4, 20).Tg, Batch(a, Split.Train, 4, 4, 20).Tg);
        Assert.NotEqual(Batch(a, Split.Train, 3, 4, 20).Tg, Batch(a, Split.Val, 3, 4, 20).Tg);
        Assert.NotEqual(Batch(a, Split.Train, 3, 4, 20).Tg, Batch(MlmSources.Create("synthetic:cfg", 6), Split.Train, 3, 4, 20).Tg);
        Assert.Throws<InputException>(() => Batch(a, Split.Train, 0, 1, 2));
    }

    [Fact]
    public void SpecialVocabEncodesAndDecodesSpecialTokensInText()
    {
        var v = MlmSources.Create("synthetic:induction", 1).Tokenizer;
        var ids = v.Encode("ab[MASK]c>[SEP]");
        Assert.Equal([2, 3, v.Special.Mask, 4, 1, v.Special.Sep], ids);
        Assert.Equal("ab[MASK]c>[SEP]", v.Decode(ids));
        Assert.Equal("[CLS][PAD][UNK]", v.Decode([v.Special.Cls, v.Special.Pad, v.Special.Unk]));
        Assert.Throws<InputException>(() => v.Encode("[mask]"));   // names are case-sensitive; '[' is not in the alphabet
    }

    [Fact]
    public void WordPieceVocabularyTokenizesTextForMaskedLm()
    {
        string dir = Directory.CreateTempSubdirectory("mt-wp-").FullName;
        try
        {
            string vocab = Path.Combine(dir, "vocab.txt");
            File.WriteAllLines(vocab, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s", ".", "a", "dog"]);
            var wp = new BertWordPiece(vocab);
            Assert.Equal(new SpecialTokens(0, 1, 2, 3, 4), wp.Special);
            Assert.Equal([5, 6, 10, 7, 8, 5, 9, 11], wp.Encode("The cats sat on the mat."));
            Assert.Equal(1, wp.Encode("zebra")[0]);
            string text = Path.Combine(dir, "corpus.txt");
            File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat. a dog sat on the cats. ", 40)));
            var mlm = MlmSources.Create("text:" + text, 1, vocab);
            Assert.Equal(14, mlm.VocabSize);
            var (inp, tg) = Batch(mlm, Split.Train, 0, 4, 16);
            Assert.Equal(2, inp[0]);
            Assert.All(tg.Where(x => x != -100), x => Assert.InRange(x, 5, 13));
            File.WriteAllLines(vocab, ["[PAD]", "[UNK]", "the"]);
            var e = Assert.Throws<InputException>(() => new BertWordPiece(vocab));
            Assert.Contains("[CLS]", e.Message);
            Assert.Throws<InputException>(() => MlmSources.Create("synthetic:cfg", 1, vocab));
        }
        finally { Directory.Delete(dir, true); }
    }
}
