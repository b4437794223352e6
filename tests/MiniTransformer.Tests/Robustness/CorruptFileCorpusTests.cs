using System.Buffers.Binary;
using System.Text;
using MiniTransformer.IO;
using Xunit.Abstractions;

namespace MiniTransformer.Tests.Robustness;

/// <summary>
/// A generated corpus of broken files — safetensors (model weights and forward inputs), config.json, llm.c checkpoints
/// and token shards — each run through the real command line (<c>mt forward</c>, <c>mt train</c>) in-process. Every case
/// must exit 2 with exactly one <c>error:</c> line that names the file (and, where the mutation makes it certain, the
/// problem), no stack trace, no output written, and bounded allocation (nothing sized from an unchecked field).
/// Valid controls made by the same generators must succeed, so the corpus cannot pass by rejecting everything.
/// </summary>
[Collection("cli")]
public sealed class CorruptFileCorpusTests : IDisposable
{
    /// <summary>Every seed file is a few KB; a case that allocates more than this sized something from an untrusted field.</summary>
    public const long MaxAllocated = 24 << 20;

    readonly string dir = Directory.CreateTempSubdirectory("mt-corpus-").FullName;
    readonly ITestOutputHelper log;

    public CorruptFileCorpusTests(ITestOutputHelper log) => this.log = log;

    public void Dispose() => Directory.Delete(dir, true);

    string P(params string[] parts) => Path.Combine([dir, .. parts]);

    /// <summary>Writes each case's bytes to <paramref name="target"/>, runs <paramref name="args"/>, checks the contract, restores the file.</summary>
    int RunCorpus(string target, IEnumerable<(string Family, string Name, byte[] Bytes, string? Expect)> cases, string[] args, string? output,
        IEnumerable<(string Name, byte[] Bytes)> controls, string? named = null)
    {
        var original = File.ReadAllBytes(target);
        var failures = new List<string>();
        var families = new SortedDictionary<string, int>();
        long maxAlloc = 0;
        int n = 0;
        foreach (var (name, bytes) in controls)
        {
            File.WriteAllBytes(target, bytes);
            var o = CliHarness.Run(args);
            if (o.Code != 0) failures.Add($"[control] {name}: exit {o.Code}: {o.Err.Trim()}");
            if (output is not null) { if (File.Exists(output)) File.Delete(output); else if (Directory.Exists(output)) Directory.Delete(output, true); }
        }
        foreach (var (family, name, bytes, expect) in cases)
        {
            n++;
            families[family] = families.GetValueOrDefault(family) + 1;
            File.WriteAllBytes(target, bytes);
            var o = CliHarness.Run(args);
            maxAlloc = Math.Max(maxAlloc, o.AllocatedBytes);
            if (CliHarness.Violation(o, named ?? target, expect, output, MaxAllocated) is string v) failures.Add($"[{family}] {name}: {v}");
            if (output is not null && File.Exists(output)) File.Delete(output);
            if (output is not null && Directory.Exists(output)) Directory.Delete(output, true);
        }
        File.WriteAllBytes(target, original);
        log.WriteLine($"{Path.GetFileName(target)}: {n} broken cases ({string.Join(", ", families.Select(kv => $"{kv.Key} {kv.Value}"))}); most allocated by one case {maxAlloc:N0} bytes");
        Assert.True(failures.Count == 0, $"{failures.Count} of {n} cases broke the contract:\n" + string.Join("\n", failures.Take(25)));
        return n;
    }

    (string Model, string Input, string Out) Setup()
    {
        Seeds.WriteModel(P("model"));
        Seeds.WriteInput(P("in.safetensors"));
        return (P("model"), P("in.safetensors"), P("out.safetensors"));
    }

    static IEnumerable<(string, string, byte[], string?)> Flat(IEnumerable<SafetensorsMutator.Case> cases) =>
        cases.Select(c => (c.Family, c.Name, c.Bytes, c.Expect));

    [Fact]
    public void BrokenModelWeightsFiles()
    {
        var (model, input, output) = Setup();
        string weights = Path.Combine(model, ModelFiles.WeightsFile);
        var m = new SafetensorsMutator(File.ReadAllBytes(weights));
        int n = RunCorpus(weights, Flat(m.Broken()), ["forward", "--model", model, "--input", input, "--out", output], output,
            m.Controls().Select(c => (c.Name, c.Bytes)));
        Assert.True(n >= 400, $"only {n} cases");
    }

    [Fact]
    public void BrokenForwardInputFiles()
    {
        var (model, input, output) = Setup();
        var m = new SafetensorsMutator(File.ReadAllBytes(input));
        int n = RunCorpus(input, Flat(m.Broken()), ["forward", "--model", model, "--input", input, "--out", output], output,
            m.Controls().Select(c => (c.Name, c.Bytes)));
        Assert.True(n >= 150, $"only {n} cases");
    }

    [Fact]
    public void BrokenConfigJson()
    {
        var (model, input, output) = Setup();
        string path = Path.Combine(model, ModelFiles.ConfigFile);
        string valid = File.ReadAllText(path);
        var cases = new List<(string, string, byte[], string?)>();
        void Add(string family, string name, string json, string? expect) => cases.Add((family, name, Encoding.UTF8.GetBytes(json), expect));

        // Truncated anywhere before the closing brace.
        int close = valid.LastIndexOf('}');
        for (int i = 0; i < close; i += 2) Add("truncated", $"to {i} chars", valid[..i], "JSON");
        // Every structural character dropped.
        for (int i = 0; i < valid.Length; i++)
            if ("{}:,\"".Contains(valid[i])) Add("json", $"'{valid[i]}' at {i} dropped", valid.Remove(i, 1), "JSON");
        foreach (var root in new[] { "[]", "1", "\"gpt2\"", "null", "true", "" }) Add("json root", root, root, root == "" ? "JSON" : "object");
        Add("json", "nested 100 deep", "{\"x\":" + new string('[', 100) + new string(']', 100) + "}", "JSON");
        Add("json", "comment", "// gpt2\n" + valid, "JSON");

        var o = System.Text.Json.Nodes.JsonNode.Parse(valid)!.AsObject();
        string With(string key, string? raw, params (string Key, string Raw)[] more)
        {
            var c = System.Text.Json.Nodes.JsonNode.Parse(valid)!.AsObject();
            foreach (var (k, r) in more.Prepend((key, raw!)))
            {
                c.Remove(k);
                if (r is not null) c[k] = System.Text.Json.Nodes.JsonNode.Parse(r);
            }
            return c.ToJsonString();
        }
        foreach (var key in new[] { "vocab_size", "n_embd", "n_layer", "n_head" })
            Add("missing key", key, With(key, null), key);
        Add("missing key", "n_positions and n_ctx", With("n_positions", null, ("n_ctx", null!)), "n_positions");
        string[] bad = ["-1", "0", "\"8\"", "8.5", "1e30", "2147483648", "-2147483649", "true", "[]", "{}", "[8]"];
        foreach (var key in new[] { "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner" })
            foreach (var v in bad)
            {
                if (key == "n_layer" && v == "0") continue;   // a valid (empty) stack: reported as unexpected tensors below
                Add("bad value", $"{key} = {v}", With(key, v), key);
            }
        var mismatches = new List<(string, string, byte[], string?)>();
        void Mismatch(string name, string json, string expect) => mismatches.Add(("mismatch", name, Encoding.UTF8.GetBytes(json), expect));
        Mismatch("n_layer = 0", With("n_layer", "0"), "h.0");
        Mismatch("n_layer = 3", With("n_layer", "3"), "h.2");
        Mismatch("vocab_size + 1", With("vocab_size", "12"), "wte.weight");
        Mismatch("n_positions + 1", With("n_positions", "6", ("n_ctx", "6")), "wpe.weight");
        Mismatch("n_embd 16", With("n_embd", "16"), "[");
        Mismatch("n_inner 16", With("n_inner", "16"), "mlp.c_fc");
        Mismatch("n_inner absent (4·d)", With("n_inner", null), "mlp.c_fc");
        Add("bad value", "n_head 3 does not divide 8", With("n_head", "3"), "n_head");
        foreach (var v in new[] { "-1", "0", "\"1e-5\"", "[]", "true" }) Add("bad value", $"layer_norm_epsilon = {v}", With("layer_norm_epsilon", v), "layer_norm_epsilon");
        foreach (var v in new[] { "\"bert\"", "\"GPT2\"", "5", "{}", "[\"gpt2\"]", "true" }) Add("bad value", $"model_type = {v}", With("model_type", v), "model_type");
        foreach (var v in new[] { "\"false\"", "0", "1", "{}" }) Add("bad value", $"tie_word_embeddings = {v}", With("tie_word_embeddings", v), "tie_word_embeddings");
        Add("duplicate", "n_embd twice", valid.Replace("\"n_embd\": 8,", "\"n_embd\": 8, \"n_embd\": 16,"), "twice");
        Add("duplicate", "vocab_size twice, same value", valid.Replace("\"vocab_size\": 11,", "\"vocab_size\": 11, \"vocab_size\": 11,"), "twice");
        // Absurd sizes: refused from the config alone, before anything is allocated.
        Add("absurd", "n_embd 2^30", With("n_embd", "1073741824", ("n_head", "1")), "n_embd");
        Add("absurd", "vocab_size 2^31-1", With("vocab_size", "2147483647"), "vocab_size");
        Add("absurd", "n_layer 10^9", With("n_layer", "1000000000"), "parameters");
        Add("absurd", "n_positions 2^31-1", With("n_positions", "2147483647", ("n_ctx", "2147483647")), "n_positions");
        // Invalid UTF-8 in a key or value.
        var bytes = Encoding.UTF8.GetBytes(valid);
        int q = valid.IndexOf("n_embd", StringComparison.Ordinal);
        var u = (byte[])bytes.Clone(); u[q] = 0xFF;
        cases.Add(("utf8", "0xFF in the n_embd key", u, null));
        int g = valid.IndexOf("\"gpt2\"", StringComparison.Ordinal) + 1;
        u = (byte[])bytes.Clone(); u[g] = 0xC0;
        cases.Add(("utf8", "0xC0 in model_type", u, "model_type"));

        int n = RunCorpus(path, cases, ["forward", "--model", model, "--input", input, "--out", output], output,
            [("original", bytes), ("tied (lm_head.weight skipped)", Encoding.UTF8.GetBytes(With("tie_word_embeddings", "true"))), ("epsilon 1e-6", Encoding.UTF8.GetBytes(With("layer_norm_epsilon", "1e-6"))), ("n_ctx only", Encoding.UTF8.GetBytes(With("n_positions", null)))]);
        // Sizes that disagree with the weights: the error names the weights file and the tensor.
        n += RunCorpus(path, mismatches, ["forward", "--model", model, "--input", input, "--out", output], output, [], named: ModelFiles.WeightsFile);
        Assert.True(n >= 150, $"only {n} cases");
    }

    [Fact]
    public void BrokenLlmcCheckpoints()
    {
        var (_, input, output) = Setup();
        string path = P("gpt2_tiny.bin");
        var valid = Seeds.Llmc();
        File.WriteAllBytes(path, valid);
        var cases = new List<(string, string, byte[], string?)>();
        byte[] WithHeader(int index, int value)
        {
            var b = (byte[])valid.Clone();
            BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4 * index), value);
            return b;
        }
        string[] fields = ["magic", "version", "max_seq_len", "vocab_size", "num_layers", "num_heads", "channels", "padded_vocab_size"];
        foreach (var (i, v, expect) in new (int, int, string?)[]
        {
            (0, 0, "magic"), (0, 20240520, "magic"), (0, -1, "magic"), (0, BinaryPrimitives.ReverseEndianness(LlmcCheckpoint.Magic), "magic"),
            (1, 5, "version 5"), (1, 1, "version"), (1, 4, "version"), (1, -3, "version"),
        })
            cases.Add(("header", $"{fields[i]} = {v}", WithHeader(i, v), expect));
        for (int i = 2; i < 8; i++)
            foreach (int v in new[] { 0, -1, int.MinValue, int.MaxValue, 1 << 20, 1 << 30 })
                cases.Add(("header", $"{fields[i]} = {v}", WithHeader(i, v), null));
        foreach (var (i, v) in new[] { (2, 6), (4, 2), (6, 16), (7, 17), (7, 15) })
            cases.Add(("size mismatch", $"{fields[i]} = {v}", WithHeader(i, v), "bytes"));
        cases.Add(("header", "num_heads 3 does not divide 8", WithHeader(5, 3), "num_heads"));
        cases.Add(("header", "vocab_size 17 > padded 16", WithHeader(3, 17), "padded_vocab_size"));
        // Truncated at every parameter-block boundary ±1, every 64 bytes of the header and every 29 bytes of the data.
        var cuts = new SortedSet<int>();
        for (int i = 0; i <= LlmcCheckpoint.HeaderBytes; i += 64) cuts.Add(i);
        foreach (long b in Seeds.LlmcBoundaries()) for (int d = -1; d <= 1; d++) cuts.Add((int)b + d);
        for (int i = LlmcCheckpoint.HeaderBytes; i < valid.Length; i += 29) cuts.Add(i);
        foreach (int c in cuts.Where(c => c >= 0 && c < valid.Length))
            cases.Add(("truncated", $"to {c} of {valid.Length}", valid[..c], "bytes"));
        cases.Add(("truncated", "4 bytes appended", [.. valid, 0, 0, 0, 0], "bytes"));
        // Absurd dimensions whose sizes overflow or dwarf the file.
        cases.Add(("absurd", "channels 2^30, layers 2^30", WithHeader(4, 1 << 30).Also(b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(24), 1 << 30)), null));
        cases.Add(("absurd", "every size int.MaxValue",
            valid.ToArray().Also(b => { for (int i = 2; i < 8; i++) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4 * i), int.MaxValue); }), null));

        int n = RunCorpus(path, cases, ["forward", "--model", path, "--input", input, "--out", output], output,
            [("original", valid), ("num_heads 4", WithHeader(5, 4)), ("vocab_size 10 (padding 16)", WithHeader(3, 10))]);
        Assert.True(n >= 100, $"only {n} cases");
    }

    [Fact]
    public void BrokenTokenShards()
    {
        string path = P("tiny_train.bin"), run = P("run");
        var valid = Seeds.Shard(300);
        File.WriteAllBytes(path, valid);
        var cases = new List<(string, string, byte[], string?)>();
        byte[] With(int offset, Action<byte[]> f) { var b = (byte[])valid.Clone(); f(b); return b; }
        foreach (int v in new[] { 0, 20240326, -1, BinaryPrimitives.ReverseEndianness(TokenShard.Magic) })
            cases.Add(("header", $"magic {v}", With(0, b => BinaryPrimitives.WriteInt32LittleEndian(b, v)), "magic"));
        foreach (int v in new[] { 0, 2, 7, -1 })
            cases.Add(("header", $"version {v}", With(0, b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), v)), "version"));
        foreach (int v in new[] { -1, int.MinValue, 299, 301, 0, 1 << 20, int.MaxValue })
            cases.Add(("header", $"count {v}", With(0, b => BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(8), v)), v < 0 ? "negative" : "tokens"));
        var cuts = new SortedSet<int>();
        for (int i = 0; i <= TokenShard.HeaderBytes; i += 32) cuts.Add(i);
        for (int d = -1; d <= 1; d++) cuts.Add(TokenShard.HeaderBytes + d);
        for (int i = TokenShard.HeaderBytes; i < valid.Length; i += 23) cuts.Add(i);
        cuts.Add(valid.Length - 1);
        foreach (int c in cuts.Where(c => c < valid.Length)) cases.Add(("truncated", $"to {c} of {valid.Length}", valid[..c], c < TokenShard.HeaderBytes ? "shorter" : "tokens"));
        cases.Add(("truncated", "one byte appended", [.. valid, 0], "tokens"));
        foreach (int i in new[] { 0, 1, 150, 299 })
            foreach (int tok in new[] { 50257, 65535 })
                cases.Add(("token id", $"token {tok} at {i}", With(0, b => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(TokenShard.HeaderBytes + 2 * i), (ushort)tok)), $"token {tok} at index {i}"));

        int n = RunCorpus(path, cases, ["train", "--data", "shards:" + path, "--steps", "1", "--batch", "1", "--seq", "4", "--layers", "1", "--dim", "8", "--heads", "2",
            "--eval-batches", "1", "--out", run], run, []);
        Assert.Equal(300, TokenShard.Read(path).Length);   // the seed itself is valid
        Assert.True(n >= 50, $"only {n} cases");
    }

    /// <summary>Files that declare enormous sizes: each is refused after reading at most its own few bytes.</summary>
    [Fact]
    public void HugeDeclaredSizesAllocateAlmostNothing()
    {
        var (model, input, output) = Setup();
        var baseline = CliHarness.Run("forward", "--model", model, "--input", P("missing.safetensors"), "--out", output);
        Assert.Equal(2, baseline.Code);
        long budget = baseline.AllocatedBytes + (1 << 20);   // the CLI's own overhead plus 1 MiB

        void Refused(string file, byte[] bytes, string expect, params string[] args)
        {
            File.WriteAllBytes(file, bytes);
            var o = CliHarness.Run(args);
            Assert.True(CliHarness.Violation(o, file, expect, output, budget) is null, CliHarness.Violation(o, file, expect, output, budget));
        }
        string[] forward = ["forward", "--model", model, "--input", P("hostile.safetensors"), "--out", output];
        Refused(P("hostile.safetensors"), SafetensorsMutator.Compose(Encoding.UTF8.GetBytes("{}"), [], 99_999_999), "larger than the rest", forward);
        Refused(P("hostile.safetensors"), SafetensorsMutator.Compose(Encoding.UTF8.GetBytes("{}"), [], 1UL << 62), "exceeds the limit", forward);
        Refused(P("hostile.safetensors"), SafetensorsMutator.Compose(
            Encoding.UTF8.GetBytes("{\"input_ids\":{\"dtype\":\"I64\",\"shape\":[1073741824,8],\"data_offsets\":[0,68719476736]}}"), new byte[64]), "outside", forward);
        var shard = Seeds.Shard(4);
        BinaryPrimitives.WriteInt32LittleEndian(shard.AsSpan(8), int.MaxValue);
        Refused(P("huge.bin"), shard, "tokens", "train", "--data", "shards:" + P("huge.bin"), "--out", P("run"));
        var llmc = Seeds.Llmc();
        BinaryPrimitives.WriteInt32LittleEndian(llmc.AsSpan(24), 1 << 16);   // channels 65536: 2^16·2^16·12 floats
        Refused(P("huge_llmc.bin"), llmc, "bytes", "forward", "--model", P("huge_llmc.bin"), "--input", input, "--out", output);
        File.WriteAllText(Path.Combine(model, ModelFiles.ConfigFile),
            Seeds.Config.ToJson().Replace("\"n_layer\": 2", "\"n_layer\": 100000000").Replace("\"n_embd\": 8", "\"n_embd\": 4096").Replace("\"n_inner\": 12", "\"n_inner\": 16384"));
        var cfg = CliHarness.Run("forward", "--model", model, "--input", input, "--out", output);
        Assert.True(CliHarness.Violation(cfg, "config.json", "parameters", output, budget) is null, cfg.Err);
    }
}

static class ByteArrayExtensions
{
    public static byte[] Also(this byte[] b, Action<byte[]> f) { f(b); return b; }
}
