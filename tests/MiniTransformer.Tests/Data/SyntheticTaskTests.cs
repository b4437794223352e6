using System.Text.RegularExpressions;
using MiniTransformer.Data;

namespace MiniTransformer.Tests.Data;

public sealed partial class SyntheticTaskTests
{
    private static (int[] Inputs, int[] Targets) Batch(IDataSource src, Split split, long index, int b, int t)
    {
        var inputs = new int[b * t];
        var targets = new int[b * t];
        src.GetBatch(split, index, b, t, inputs, targets);
        return (inputs, targets);
    }

    /// <summary>The row's full token stream: inputs plus the token after the last one (when it is scored).</summary>
    private static string RowText(IDataSource src, int[] inputs, int[] targets, int row, int t) =>
        src.Tokenizer.Decode(inputs.AsSpan(row * t, t)) +
        (targets[row * t + t - 1] >= 0 ? src.Tokenizer.Decode([targets[row * t + t - 1]]) : "");

    [Theory]
    [InlineData(Split.Train)]
    [InlineData(Split.Val)]
    public void InductionScoresExactlyTheCopiedTokens(Split split)
    {
        var src = DataSources.Create("synthetic:induction", 11);
        var tok = src.Tokenizer;
        int copy = tok.Encode(">")[0], end = tok.Encode("|")[0];
        Assert.Equal(end, tok.EndOfText);
        const int b = 8, t = 100;
        var (inputs, targets) = Batch(src, split, 2, b, t);
        int scored = 0;
        for (int r = 0; r < b; r++)
        {
            bool copying = false;
            var segment = new List<int>();
            int copied = 0;
            for (int i = 0; i < t; i++)
            {
                int x = inputs[r * t + i], y = targets[r * t + i];
                if (x == copy) { copying = true; copied = 0; }
                else if (x == end) { copying = false; segment.Clear(); }
                else if (copying) copied++;
                else segment.Add(x);

                // Predictable: the next token after '>' or inside the copy (the copy itself, then '|').
                if (!copying)
                {
                    Assert.Equal(DataSources.Ignore, y);
                    continue;
                }
                scored++;
                int expected = copied < segment.Count ? segment[copied] : end;
                Assert.Equal(expected, y);
                if (i + 1 < t) Assert.Equal(inputs[r * t + i + 1], y);
            }
        }
        Assert.True(scored > b * t / 3, $"only {scored} scored positions");
    }

    [Fact]
    public void InductionRowsLookLikeSegmentCopies()
    {
        var src = DataSources.Create("synthetic:induction", 1);
        var (inputs, targets) = Batch(src, Split.Train, 0, 1, 200);
        string text = RowText(src, inputs, targets, 0, 200);
        foreach (string episode in text.Split('|')[..^1])
        {
            var halves = episode.Split('>');
            Assert.Equal(2, halves.Length);
            Assert.Equal(halves[0], halves[1]);
            Assert.InRange(halves[0].Length, 4, 16);
        }
        Assert.All(src.SamplePrompts(3), p => Assert.Matches("^[a-x]{4,16}>$", p));
    }

    [Fact]
    public void InductionValUsesFreshSegments()
    {
        var src = DataSources.Create("synthetic:induction", 1);
        var train = new HashSet<string>();
        for (int i = 0; i < 20; i++)
        {
            var (inp, tg) = Batch(src, Split.Train, i, 4, 128);
            for (int r = 0; r < 4; r++)
                foreach (var e in RowText(src, inp, tg, r, 128).Split('|')[..^1]) train.Add(e);
        }
        var (vi, vt) = Batch(src, Split.Val, 0, 4, 128);
        var val = Enumerable.Range(0, 4).SelectMany(r => RowText(src, vi, vt, r, 128).Split('|')[..^1]).ToList();
        Assert.NotEmpty(val);
        Assert.DoesNotContain(val, train.Contains);
    }

    [Fact]
    public void CfgTrainingSentencesAllParse()
    {
        var src = DataSources.Create("synthetic:cfg", 4);
        Assert.Equal(CfgGrammar.Alphabet.Length, src.VocabSize);
        int sentences = 0;
        var lengths = new List<int>();
        for (int index = 0; index < 10; index++)
        {
            const int b = 8, t = 128;
            var (inputs, targets) = Batch(src, Split.Train, index, b, t);
            Assert.DoesNotContain(DataSources.Ignore, targets);
            for (int r = 0; r < b; r++)
            {
                string text = RowText(src, inputs, targets, r, t);
                var (valid, total) = CfgGrammar.CountValid(text);
                Assert.Equal(total, valid);
                sentences += total;
                lengths.AddRange(text.Split(';')[..^1].Select(s => s.Length));
            }
        }
        Assert.True(sentences > 200, $"only {sentences} complete sentences");
        Assert.All(lengths, l => Assert.InRange(l, CfgGrammar.MinLength, CfgGrammar.MaxLength));
        Assert.InRange(lengths.Average(), 8.0, 30.0);
        Assert.Contains(lengths, l => l >= 20); // the language is not trivially short
    }

    [Fact]
    public void CfgSamplesUseNestingOfBothBracketKinds()
    {
        var samples = Enumerable.Range(0, 2000).Select(i => CfgGrammar.Sample(i)).ToList();
        Assert.All(samples, s => Assert.True(CfgGrammar.IsValid(s), s));
        Assert.Contains(samples, s => s.Contains("([", StringComparison.Ordinal) || s.Contains("[(", StringComparison.Ordinal));
        Assert.Contains(samples, s => s.Contains("((", StringComparison.Ordinal) || s.Contains("[[", StringComparison.Ordinal));
        Assert.True(samples.Distinct().Count() > 1500);
    }

    [Fact]
    public void CfgVerifierRejectsMutatedSentences()
    {
        int checkedBrackets = 0;
        for (int i = 0; i < 500; i++)
        {
            string s = CfgGrammar.Sample(i);
            Assert.True(CfgGrammar.IsValid(s));
            Assert.True(CfgGrammar.IsValid(s + ";"));
            Assert.False(CfgGrammar.IsValid(s + "+"), s);          // dangling operator
            Assert.False(CfgGrammar.IsValid("*" + s), s);          // leading operator
            Assert.False(CfgGrammar.IsValid(s + s), s);            // two operands without an operator
            Assert.False(CfgGrammar.IsValid(s + "a"), s);          // character outside the language
            for (int p = 0; p < s.Length; p++)
            {
                if ("()[]".Contains(s[p]))
                {
                    Assert.False(CfgGrammar.IsValid(s.Remove(p, 1)), s); // unbalanced
                    char swapped = s[p] switch { '(' => '[', '[' => '(', ')' => ']', _ => ')' };
                    Assert.False(CfgGrammar.IsValid(s[..p] + swapped + s[(p + 1)..]), s); // mismatched kinds
                    checkedBrackets++;
                }
                if ("+-*".Contains(s[p]))
                    Assert.False(CfgGrammar.IsValid(s.Insert(p, "+")), s); // doubled operator
            }
        }
        Assert.True(checkedBrackets > 100);
        foreach (string bad in new[] { "", ";", "()", "(1]", "1+", "[x", "x)", "1*(2+)", "xy", "1;2", new string('(', 10000) + "1" })
            Assert.False(CfgGrammar.IsValid(bad), bad);
        Assert.True(CfgGrammar.IsValid(new string('(', 100) + "1" + new string(')', 100)));
        Assert.Equal((2, 3), CfgGrammar.CountValid("1+2;(x;[y*3];4-"));
    }

    [GeneratedRegex(@"(?:What is the birth date of|What is the birth city of|Which university did|What was the major of|Which company employs) (\w+ \w+)")]
    private static partial Regex QuestionRegex();

    [Fact]
    public void BioHeldOutPeopleNeverHaveTrainQa()
    {
        var src = (BioSource)DataSources.Create("synthetic:bio", 9);
        var heldOut = src.HeldOutNames.ToHashSet();
        var trainQa = src.TrainQaNames.ToHashSet();
        Assert.Equal(src.People.Count, heldOut.Count + trainQa.Count);
        Assert.Empty(heldOut.Intersect(trainQa));
        var namesInBios = new HashSet<string>();
        int questions = 0;
        for (int index = 0; index < 30; index++)
        {
            const int b = 4, t = 256;
            var (inputs, targets) = Batch(src, Split.Train, index, b, t);
            Assert.DoesNotContain(DataSources.Ignore, targets);
            for (int r = 0; r < b; r++)
            {
                string text = src.Tokenizer.Decode(inputs.AsSpan(r * t, t));
                // A row may start mid-question only at its end (rows start with a fresh item), so every match is whole.
                foreach (Match m in QuestionRegex().Matches(text))
                {
                    questions++;
                    Assert.DoesNotContain(m.Groups[1].Value, heldOut);
                    Assert.Contains(m.Groups[1].Value, trainQa);
                }
                foreach (var name in heldOut.Where(n => text.Contains(n, StringComparison.Ordinal))) namesInBios.Add(name);
            }
        }
        Assert.True(questions > 50, $"only {questions} questions");
        Assert.NotEmpty(namesInBios); // held-out people do appear in train, in biographies
    }

    [Fact]
    public void BioValScoresOnlyAnswersAboutHeldOutPeople()
    {
        var src = (BioSource)DataSources.Create("synthetic:bio", 9);
        var heldOut = src.HeldOutNames.ToHashSet();
        var byName = src.People.ToDictionary(p => p.Name);
        string[] questionStarts = ["What is the birth date of", "What is the birth city of", "Which university did", "What was the major of", "Which company employs"];
        const int b = 4, t = 200;
        var (inputs, targets) = Batch(src, Split.Val, 0, b, t);
        var tok = (WordTokenizer)src.Tokenizer;
        for (int r = 0; r < b; r++)
        {
            string text = tok.Decode(inputs.AsSpan(r * t, t));
            var items = text.Split(BioSource.EndToken, StringSplitOptions.TrimEntries)[..^1];
            Assert.NotEmpty(items);
            // Each complete item is "question? answer." with the answer equal to the person's attribute.
            foreach (string item in items)
            {
                var m = QuestionRegex().Match(item);
                Assert.True(m.Success, item);
                string name = m.Groups[1].Value;
                Assert.Contains(name, heldOut);
                int attr = Array.FindIndex(questionStarts, q => item.StartsWith(q, StringComparison.Ordinal));
                string answer = item[(item.IndexOf('?') + 2)..^1];
                Assert.Equal(byName[name].Values[attr], answer);
            }
            // Scored targets, read in order, are exactly the answers' tokens.
            var scored = new List<int>();
            var expected = new List<int>();
            bool inAnswer = false;
            for (int i = 0; i < t; i++)
            {
                int x = inputs[r * t + i], y = targets[r * t + i];
                string word = tok.Words[x];
                if (word == "?") inAnswer = true;
                else if (word == ".") inAnswer = false;
                if (y != DataSources.Ignore) scored.Add(y);
                // Predict the next token only while the next token is part of the answer.
                if (inAnswer && i + 1 < t && tok.Words[inputs[r * t + i + 1]] != ".") expected.Add(inputs[r * t + i + 1]);
            }
            Assert.Equal(expected, scored.Take(expected.Count));
            Assert.InRange(scored.Count - expected.Count, 0, 3); // a truncated answer at the row's end
        }
    }

    [Fact]
    public void BioTokenizerRoundTripsAndPromptsAreHeldOutQuestions()
    {
        var src = (BioSource)DataSources.Create("synthetic:bio", 2);
        Assert.InRange(src.VocabSize, 200, 600);
        string qa = src.QuestionAnswer(0, 0);
        Assert.Equal(qa, src.Tokenizer.Decode(src.Tokenizer.Encode(qa)));
        Assert.Matches(@"^What is the birth date of \w+ \w+\? \w+ \d+, \d{4}\.$", qa);
        var heldOut = src.HeldOutNames.ToHashSet();
        foreach (string p in src.SamplePrompts(10))
        {
            Assert.EndsWith("?", p, StringComparison.Ordinal);
            Assert.Contains(QuestionRegex().Match(p).Groups[1].Value, heldOut);
        }
        Assert.Throws<InputException>(() => src.Tokenizer.Encode("Who is Zaphod?"));
        Assert.Equal(src.People.Select(p => p.Name), ((BioSource)DataSources.Create("synthetic:bio", 2)).People.Select(p => p.Name));
        Assert.NotEqual(src.People.Select(p => p.Name), ((BioSource)DataSources.Create("synthetic:bio", 3)).People.Select(p => p.Name));
    }
}
