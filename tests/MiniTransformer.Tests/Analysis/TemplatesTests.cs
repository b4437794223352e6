using MiniTransformer.Analysis;

namespace MiniTransformer.Tests.Analysis;

public sealed class TemplatesTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(8, 1)]
    [InlineData(10, 42)]
    public void Generator_yields_the_counts_it_claims(int perWord, int seed)
    {
        var pairs = Templates.Generate(perWord, seed);
        Assert.Equal(Templates.Verbs.Length * perWord, pairs.Count(p => p.Change == GrammaticalChange.Tense));
        Assert.Equal(Templates.Nouns.Length * perWord, pairs.Count(p => p.Change == GrammaticalChange.Number));
        foreach (var g in pairs.GroupBy(p => (p.Change, p.Word)))
        {
            Assert.Equal(perWord, g.Count());
            Assert.Equal(perWord, g.Select(p => p.A).Distinct().Count());   // distinct frames per word
        }
        Assert.Equal(50, Templates.Verbs.Length);
        Assert.Equal(48, Templates.Nouns.Length);
    }

    [Fact]
    public void Pairs_differ_in_exactly_the_changed_word_which_carries_the_change()
    {
        var verbs = Templates.Verbs.ToDictionary(v => v.Base);
        var nouns = Templates.Nouns.ToDictionary(n => n.Singular);
        foreach (var p in Templates.Generate(10, 3))
        {
            var a = p.A.Split(' '); var b = p.B.Split(' ');
            Assert.Equal(a.Length, b.Length);
            var diff = Enumerable.Range(0, a.Length).Where(i => a[i] != b[i]).ToArray();
            Assert.Equal([p.Changed], diff);
            Assert.NotEqual(p.Changed, p.Context);
            Assert.Equal(a[p.Context], b[p.Context]);
            Assert.Equal(".", a[^1]);
            if (p.Change == GrammaticalChange.Tense)
            {
                Assert.Equal(verbs[p.Word].Present, a[p.Changed]);
                Assert.Equal(verbs[p.Word].Past, b[p.Changed]);
                Assert.Equal(verbs[p.Word].Irregular, p.Irregular);
            }
            else
            {
                Assert.Equal(nouns[p.Word].Singular, a[p.Changed]);
                Assert.Equal(nouns[p.Word].Plural, b[p.Changed]);
                Assert.DoesNotContain("was", a); Assert.DoesNotContain("is", a);   // no agreement with the noun
            }
        }
    }

    [Fact]
    public void Generation_is_a_function_of_the_seed()
    {
        Assert.Equal(Templates.Generate(6, 5), Templates.Generate(6, 5));
        Assert.NotEqual(Templates.Generate(6, 5).Select(p => p.A), Templates.Generate(6, 6).Select(p => p.A));
        Assert.Throws<ArgumentException>(() => Templates.Generate(11, 1));
        Assert.Throws<ArgumentException>(() => Templates.Generate(0, 1));
    }

    [Fact]
    public void Every_form_is_distinct_from_its_partner()
    {
        Assert.All(Templates.Verbs, v => Assert.NotEqual(v.Present, v.Past));
        Assert.All(Templates.Nouns, n => Assert.NotEqual(n.Singular, n.Plural));
        Assert.Equal(Templates.Verbs.Length, Templates.Verbs.Select(v => v.Base).Distinct().Count());
        Assert.Equal(Templates.Nouns.Length, Templates.Nouns.Select(v => v.Singular).Distinct().Count());
    }
}
