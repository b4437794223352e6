using MiniTransformer.Analysis;

namespace MiniTransformer.Tests.Analysis;

public sealed class WordVectorsTests
{
    static readonly string[] Vocab = ["[PAD]", "[unused0]", "[CLS]", "cat", "dog", "##s", "car", "[SEP]"];

    // Rows: the special tokens point exactly where queries go, so a nearest-neighbour search that did not skip them would list them.
    static readonly double[] Table =
    [
        1, 0, 0,    // [PAD]
        1, 0.1, 0,  // [unused0]
        0, 1, 0,    // [CLS]
        2, 0.2, 0,  // cat
        1, 0.3, 0,  // dog
        0, 0, 3,    // ##s
        0, 1, 0.1,  // car
        0.5, 0.5, 0,// [SEP]
    ];

    [Fact]
    public void Nearest_skips_special_tokens_and_ranks_by_cosine()
    {
        var wv = new WordVectors(Table, Vocab, 3);
        var n = wv.Nearest([1, 0.5, 0], 3);
        Assert.Equal(["dog", "cat", "car"], n.Select(x => x.Token));
        Assert.Equal(1.15 / Math.Sqrt(1.09 * 1.25), n[0].Cosine, 1e-12);
        Assert.Equal(2.1 / Math.Sqrt(4.04 * 1.25), n[1].Cosine, 1e-12);
        Assert.Equal(["##s"], wv.Nearest([0, 0, 1], 1).Select(x => x.Token));
        var whole = new WordVectors(Table, Vocab, 3, wholeWordsOnly: true);
        Assert.DoesNotContain("##s", whole.Nearest([0, 0, 1], 10).Select(x => x.Token));
        Assert.Equal(3, whole.Nearest([0, 0, 1], 10).Length);
        Assert.Equal(["cat"], wv.Nearest([1, 0.5, 0], 1, new HashSet<int> { 4 }).Select(x => x.Token));
        Assert.True(WordVectors.IsSpecial("[unused99]"));
        Assert.False(WordVectors.IsSpecial("[x"));
    }

    [Fact]
    public void A_word_of_several_pieces_is_the_mean_of_their_rows()
    {
        var wv = new WordVectors(Table, Vocab, 3);
        Assert.Equal([0.5, 0.15, 1.5], wv.WordVector([4, 5]));
        Assert.Equal([2, 0.2, 0], wv.WordVector([3]));
        Assert.Throws<ArgumentException>(() => wv.WordVector([]));
    }
}
