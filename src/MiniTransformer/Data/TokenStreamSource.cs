using System.IO.Enumeration;
using MiniTransformer.IO;

namespace MiniTransformer.Data;

/// <summary>
/// A fixed token stream (text file, character file or llm.c shards) split into train and val segments. Each batch
/// row is a random window of <c>seq + 1</c> consecutive tokens inside one segment, drawn by a generator seeded from
/// (seed, split, index, row); every position is scored (targets[t] = inputs[t + 1], with the window's last token as
/// the final target).
/// </summary>
public sealed class TokenStreamSource : IDataSource
{
    /// <summary>Fraction of a single stream's tokens (its tail) used as the val split.</summary>
    public const double ValFraction = 0.1;

    private readonly int _seed;
    private readonly int[][] _train;
    private readonly int[][] _val;
    private readonly string _what;

    private TokenStreamSource(string spec, int seed, ITokenizer tokenizer, int[][] train, int[][] val, string what)
    {
        Spec = spec;
        _seed = seed;
        Tokenizer = tokenizer;
        _train = train;
        _val = val;
        _what = what;
    }

    public string Spec { get; }

    public ITokenizer Tokenizer { get; }

    public int VocabSize => Tokenizer.VocabSize;

    public long TrainTokens => _train.Sum(s => (long)s.Length);

    public long ValTokens => _val.Sum(s => (long)s.Length);

    /// <summary><c>text:PATH</c>: the file through the GPT-2 tokenizer; the last 10% of tokens is val.</summary>
    public static TokenStreamSource FromTextFile(string spec, string path, int seed)
    {
        string text = ReadText(spec, path);
        int[] tokens = Gpt2Tokenizer.Instance.Encode(text);
        var (train, val) = SplitTail(tokens);
        return new TokenStreamSource(spec, seed, Gpt2Tokenizer.Instance, [train], [val],
            $"GPT-2 tokens of {path} ({tokens.Length:N0} tokens, last 10% = val)");
    }

    /// <summary>Already tokenized text (e.g. BERT WordPiece for masked-LM data); the last 10% of tokens is val.</summary>
    internal static TokenStreamSource FromTokens(string spec, int seed, ITokenizer tokenizer, int[] tokens, string what)
    {
        var (train, val) = SplitTail(tokens);
        return new TokenStreamSource(spec, seed, tokenizer, [train], [val], what);
    }

    /// <summary><c>chars:PATH</c>: the file over a vocabulary of its distinct characters (sorted); last 10% is val.</summary>
    public static TokenStreamSource FromCharFile(string spec, string path, int seed)
    {
        string text = ReadText(spec, path);
        var tokenizer = CharTokenizer.FromText(text);
        int[] tokens = tokenizer.Encode(text);
        var (train, val) = SplitTail(tokens);
        return new TokenStreamSource(spec, seed, tokenizer, [train], [val],
            $"characters of {path} ({tokens.Length:N0} chars, vocab {tokenizer.VocabSize}, last 10% = val)");
    }

    /// <summary>
    /// <c>shards:GLOB</c>: llm.c uint16 GPT-2 token shards matching GLOB ('*' and '?' in the file name only), sorted by
    /// name. Shards whose file name contains "val" form the val split; when none does, the last shard is val, and with a
    /// single shard its last 10% is val. Windows never cross shard boundaries.
    /// </summary>
    public static TokenStreamSource FromShards(string spec, string glob, int seed)
    {
        if (string.IsNullOrWhiteSpace(glob))
            throw new InputException($"data spec '{spec}': expected shards:GLOB, e.g. shards:data/fineweb_*.bin");
        string dir = Path.GetDirectoryName(glob) is { Length: > 0 } d ? d : ".";
        string pattern = Path.GetFileName(glob);
        if (dir.IndexOfAny(['*', '?']) >= 0)
            throw new InputException($"data spec '{spec}': only the file name may contain wildcards, not the directory '{dir}'");
        if (pattern.Length == 0)
            throw new InputException($"data spec '{spec}': the glob '{glob}' names a directory; expected a file pattern such as {Path.Combine(dir, "*.bin")}");
        if (!Directory.Exists(dir))
            throw new InputException($"data spec '{spec}': directory '{dir}' does not exist");

        var files = Directory.EnumerateFiles(dir)
            .Where(f => FileSystemName.MatchesSimpleExpression(pattern, Path.GetFileName(f), ignoreCase: false))
            .Order(StringComparer.Ordinal)
            .ToArray();
        if (files.Length == 0)
            throw new InputException($"data spec '{spec}': no files in '{dir}' match '{pattern}'; expected llm.c token shards (.bin)");

        var shards = files.Select(f => (Path: f, Tokens: ReadShard(f))).ToArray();
        bool IsVal(string f) => Path.GetFileName(f).Contains("val", StringComparison.OrdinalIgnoreCase);
        int[][] train, val;
        string layout;
        if (shards.Any(s => IsVal(s.Path)))
        {
            train = [.. shards.Where(s => !IsVal(s.Path)).Select(s => s.Tokens)];
            val = [.. shards.Where(s => IsVal(s.Path)).Select(s => s.Tokens)];
            layout = "names containing 'val' = val";
        }
        else if (shards.Length > 1)
        {
            train = [.. shards[..^1].Select(s => s.Tokens)];
            val = [shards[^1].Tokens];
            layout = $"last shard {Path.GetFileName(shards[^1].Path)} = val";
        }
        else
        {
            var (t, v) = SplitTail(shards[0].Tokens);
            train = [t];
            val = [v];
            layout = "single shard, last 10% = val";
        }
        long total = shards.Sum(s => (long)s.Tokens.Length);
        return new TokenStreamSource(spec, seed, Gpt2Tokenizer.Instance, train, val,
            $"{shards.Length} llm.c GPT-2 token shard(s) {glob} ({total:N0} tokens; {layout})");
    }

    public string Describe() =>
        $"{Spec}: {_what}; random windows; val accuracy = next-token accuracy on the held-out val tokens";

    public IReadOnlyList<string> SamplePrompts(int count)
    {
        // Beginnings of random val windows (train when val is empty): 8 GPT-2 tokens or 24 characters.
        var segments = (_val.Any(s => s.Length > 0) ? _val : _train).Where(s => s.Length > 0).ToArray();
        if (segments.Length == 0) return [.. Enumerable.Repeat("\n", count)];
        int length = Tokenizer is CharTokenizer ? 24 : 8;
        var prompts = new string[count];
        for (int i = 0; i < count; i++)
        {
            var rng = DetRng.From(_seed, 7004, i);
            var seg = segments[rng.Next(segments.Length)];
            int len = Math.Min(length, seg.Length);
            int start = rng.Next(seg.Length - len + 1);
            prompts[i] = Tokenizer.Decode(seg.AsSpan(start, len));
        }
        return prompts;
    }

    public void GetBatch(Split split, long index, int batch, int seq, Span<int> inputs, Span<int> targets)
    {
        DataSources.CheckBatchArgs(index, batch, seq, inputs, targets);
        var segments = split == Split.Train ? _train : _val;
        // A window of seq + 1 tokens starting at s needs s + seq < length: length - seq starts per segment.
        long windows = segments.Sum(s => Math.Max(0L, s.Length - (long)seq));
        if (windows == 0)
        {
            long tokens = segments.Sum(s => (long)s.Length);
            long longest = segments.Length == 0 ? 0 : segments.Max(s => s.Length);
            throw new InputException(
                $"data spec '{Spec}': the {split.ToString().ToLowerInvariant()} split has {tokens:N0} tokens" +
                (segments.Length > 1 ? $" (longest piece {longest:N0})" : "") +
                $"; a sequence length of {seq} needs at least {seq + 1} consecutive tokens — use more data or a shorter sequence");
        }
        for (int b = 0; b < batch; b++)
        {
            var rng = DetRng.From(_seed, split, index, b, 1);
            long r = rng.NextLong(windows);
            int k = 0;
            while (r >= Math.Max(0L, segments[k].Length - (long)seq))
            {
                r -= Math.Max(0L, segments[k].Length - (long)seq);
                k++;
            }
            var window = segments[k].AsSpan((int)r, seq + 1);
            window[..seq].CopyTo(inputs.Slice(b * seq, seq));
            window[1..].CopyTo(targets.Slice(b * seq, seq));
        }
    }

    private static (int[] Train, int[] Val) SplitTail(int[] tokens)
    {
        int valCount = (int)(tokens.Length * ValFraction);
        return (tokens[..^valCount], tokens[^valCount..]);
    }

    internal static string ReadText(string spec, string path)
    {
        if (string.IsNullOrWhiteSpace(path))
            throw new InputException($"data spec '{spec}': expected a file path after the colon, e.g. {spec.Split(':')[0]}:input.txt");
        if (!File.Exists(path))
            throw new InputException($"data spec '{spec}': text file '{path}' does not exist");
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"data spec '{spec}': cannot read text file '{path}': {e.Message}");
        }
        if (text.Length == 0)
            throw new InputException($"data spec '{spec}': text file '{path}' is empty");
        return text;
    }

    private static int[] ReadShard(string path)
    {
        int[] tokens = TokenShard.Read(path);
        for (int i = 0; i < tokens.Length; i++)
        {
            if (tokens[i] >= Gpt2Tokenizer.Vocab)
                throw new InputException($"{path}: token {tokens[i]} at index {i} is outside the GPT-2 vocabulary of {Gpt2Tokenizer.Vocab}");
        }
        return tokens;
    }
}
