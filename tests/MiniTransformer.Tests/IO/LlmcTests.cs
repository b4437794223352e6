using System.Buffers.Binary;
using MiniTransformer.IO;

namespace MiniTransformer.Tests.IO;

public sealed class LlmcTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private const int V = 5, Vp = 8, MaxT = 4, L = 2, NH = 2, C = 4;

    /// <summary>A tiny llm.c checkpoint in its own layout; parameter k (in file order) has value k + 1.</summary>
    private sealed class Tiny
    {
        public readonly int[] Header = new int[256];
        public readonly float[] Params;
        // offsets (in floats) of each block, in file order
        public readonly int Wte, Wpe, Ln1w, Ln1b, Qkvw, Qkvb, Attprojw, Attprojb, Ln2w, Ln2b, Fcw, Fcb, Fcprojw, Fcprojb, Lnfw, Lnfb;

        public Tiny()
        {
            Header[0] = 20240326; Header[1] = 3; Header[2] = MaxT; Header[3] = V; Header[4] = L; Header[5] = NH; Header[6] = C; Header[7] = Vp;
            int p = 0;
            int Next(int n) { int o = p; p += n; return o; }
            Wte = Next(Vp * C); Wpe = Next(MaxT * C);
            Ln1w = Next(L * C); Ln1b = Next(L * C);
            Qkvw = Next(L * 3 * C * C); Qkvb = Next(L * 3 * C);
            Attprojw = Next(L * C * C); Attprojb = Next(L * C);
            Ln2w = Next(L * C); Ln2b = Next(L * C);
            Fcw = Next(L * 4 * C * C); Fcb = Next(L * 4 * C);
            Fcprojw = Next(L * C * 4 * C); Fcprojb = Next(L * C);
            Lnfw = Next(C); Lnfb = Next(C);
            Params = new float[p];
            for (int i = 0; i < Params.Length; i++) Params[i] = i + 1;
        }

        public byte[] ToBytes()
        {
            var b = new byte[1024 + 4 * Params.Length];
            for (int i = 0; i < 256; i++) BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4 * i), Header[i]);
            for (int i = 0; i < Params.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(1024 + 4 * i), Params[i]);
            return b;
        }
    }

    private string Write(string name, byte[] bytes)
    {
        var path = _dir.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static float At(StTensor t, params long[] index)
    {
        Assert.Equal(t.Shape.Length, index.Length);
        long flat = 0;
        for (int i = 0; i < index.Length; i++)
        {
            Assert.InRange(index[i], 0, t.Shape[i] - 1);
            flat = flat * t.Shape[i] + index[i];
        }
        return BinaryPrimitives.ReadSingleLittleEndian(t.Bytes.AsSpan((int)(4 * flat)));
    }

    [Fact]
    public void Checkpoint_Tiny_ReadsHuggingFaceNamesShapesAndTransposes()
    {
        var m = new Tiny();
        // the parameter count llm.c's fill_in_parameter_sizes gives
        Assert.Equal(Vp * C + MaxT * C + L * (12 * C * C + 13 * C) + 2 * C, m.Params.Length);
        var path = Write("gpt2_tiny.bin", m.ToBytes());

        var ck = LlmcCheckpoint.Read(path);
        Assert.Equal((MaxT, V, Vp, L, NH, C), (ck.MaxSeqLen, ck.VocabSize, ck.PaddedVocabSize, ck.NumLayers, ck.NumHeads, ck.Channels));

        var names = new List<string> { "wte.weight", "wpe.weight" };
        for (int i = 0; i < L; i++)
            foreach (var s in new[] { "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
                                      "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias" })
                names.Add($"h.{i}.{s}");
        names.Add("ln_f.weight");
        names.Add("ln_f.bias");
        Assert.Equal(names, ck.Tensors.Select(t => t.Name));
        Assert.All(ck.Tensors, t => Assert.Equal(StDType.F32, t.DType));

        var byName = ck.Tensors.ToDictionary(t => t.Name);
        StTensor T(string n) => byName[n];

        Assert.Equal([V, C], T("wte.weight").Shape);
        Assert.Equal([MaxT, C], T("wpe.weight").Shape);
        Assert.Equal([C, 3 * C], T("h.0.attn.c_attn.weight").Shape);
        Assert.Equal([3 * C], T("h.0.attn.c_attn.bias").Shape);
        Assert.Equal([C, C], T("h.1.attn.c_proj.weight").Shape);
        Assert.Equal([C, 4 * C], T("h.0.mlp.c_fc.weight").Shape);
        Assert.Equal([4 * C], T("h.0.mlp.c_fc.bias").Shape);
        Assert.Equal([4 * C, C], T("h.1.mlp.c_proj.weight").Shape);
        Assert.Equal([C], T("ln_f.bias").Shape);

        float[] P = m.Params;
        // wte: only the first V rows of the padded table, in place
        Assert.Equal(P[m.Wte..(m.Wte + V * C)], T("wte.weight").ToFloats());
        Assert.Equal(P[m.Wte + 4 * C + 3], At(T("wte.weight"), 4, 3));
        Assert.Equal(P[m.Wpe..(m.Wpe + MaxT * C)], T("wpe.weight").ToFloats());

        for (int layer = 0; layer < L; layer++)
        {
            string h = $"h.{layer}.";
            Assert.Equal(P[(m.Ln1w + layer * C)..(m.Ln1w + (layer + 1) * C)], T(h + "ln_1.weight").ToFloats());
            Assert.Equal(P[(m.Ln1b + layer * C)..(m.Ln1b + (layer + 1) * C)], T(h + "ln_1.bias").ToFloats());
            Assert.Equal(P[(m.Qkvb + layer * 3 * C)..(m.Qkvb + (layer + 1) * 3 * C)], T(h + "attn.c_attn.bias").ToFloats());
            Assert.Equal(P[(m.Attprojb + layer * C)..(m.Attprojb + (layer + 1) * C)], T(h + "attn.c_proj.bias").ToFloats());
            Assert.Equal(P[(m.Ln2w + layer * C)..(m.Ln2w + (layer + 1) * C)], T(h + "ln_2.weight").ToFloats());
            Assert.Equal(P[(m.Ln2b + layer * C)..(m.Ln2b + (layer + 1) * C)], T(h + "ln_2.bias").ToFloats());
            Assert.Equal(P[(m.Fcb + layer * 4 * C)..(m.Fcb + (layer + 1) * 4 * C)], T(h + "mlp.c_fc.bias").ToFloats());
            Assert.Equal(P[(m.Fcprojb + layer * C)..(m.Fcprojb + (layer + 1) * C)], T(h + "mlp.c_proj.bias").ToFloats());

            // llm.c stores W[out][in]; HF Conv1D stores W[in][out]. Check every element.
            for (int o = 0; o < 3 * C; o++)
                for (int i = 0; i < C; i++)
                    Assert.Equal(P[m.Qkvw + layer * 3 * C * C + o * C + i], At(T(h + "attn.c_attn.weight"), i, o));
            for (int o = 0; o < C; o++)
                for (int i = 0; i < C; i++)
                    Assert.Equal(P[m.Attprojw + layer * C * C + o * C + i], At(T(h + "attn.c_proj.weight"), i, o));
            for (int o = 0; o < 4 * C; o++)
                for (int i = 0; i < C; i++)
                    Assert.Equal(P[m.Fcw + layer * 4 * C * C + o * C + i], At(T(h + "mlp.c_fc.weight"), i, o));
            for (int o = 0; o < C; o++)
                for (int i = 0; i < 4 * C; i++)
                    Assert.Equal(P[m.Fcprojw + layer * C * 4 * C + o * 4 * C + i], At(T(h + "mlp.c_proj.weight"), i, o));
        }

        // The example from the brief: c_attn.weight[in=1, out=7] == qkvw[layer][7][1].
        Assert.Equal(P[m.Qkvw + 1 * 3 * C * C + 7 * C + 1], At(T("h.1.attn.c_attn.weight"), 1, 7));
        Assert.Equal(P[m.Lnfw..(m.Lnfw + C)], T("ln_f.weight").ToFloats());
        Assert.Equal(P[m.Lnfb..(m.Lnfb + C)], T("ln_f.bias").ToFloats());
        Assert.Equal(P[^1], At(T("ln_f.bias"), C - 1));

        // and the result saves as safetensors
        var st = _dir.File("tiny.safetensors");
        SafeTensors.Write(st, ck.Tensors);
        Assert.Equal(ck.Tensors.Select(t => t.Bytes), SafeTensors.Read(st).Tensors.Select(t => t.Bytes));
    }

    public static TheoryData<string, int, int, string> BadHeaderFields => new()
    {
        // name, header index, value, expected fragment
        { "magic", 0, 20240520, "magic" },
        { "version5", 1, 5, "version 5" },
        { "version1", 1, 1, "version 1" },
        { "maxT0", 2, 0, "max_seq_len" },
        { "vocabNeg", 3, -5, "vocab_size" },
        { "layers0", 4, 0, "num_layers" },
        { "heads0", 5, 0, "num_heads" },
        { "channels0", 6, 0, "channels" },
        { "padded0", 7, 0, "padded_vocab_size" },
        { "heads3", 5, 3, "not divisible" },
        { "paddedSmall", 7, 4, "smaller than vocab_size" },
        { "bigLayers", 4, 3, "implies" },
        { "overflow", 6, int.MaxValue, "overflows" },
        { "huge", 4, int.MaxValue, "bytes" },
    };

    [Theory]
    [MemberData(nameof(BadHeaderFields))]
    public void Checkpoint_BadHeader_ThrowsInputException(string name, int index, int value, string fragment)
    {
        var m = new Tiny();
        m.Header[index] = value;
        if (name == "overflow") m.Header[5] = 1; // keep C % H == 0 so the size check is reached
        var path = Write(name + ".bin", m.ToBytes());
        var e = Assert.Throws<InputException>(() => LlmcCheckpoint.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(fragment, e.Message);
    }

    [Theory]
    [InlineData(-4)]
    [InlineData(4)]
    [InlineData(-1)]
    public void Checkpoint_WrongFileSize_ThrowsInputException(int delta)
    {
        var bytes = new Tiny().ToBytes();
        Array.Resize(ref bytes, bytes.Length + delta);
        var path = Write("size.bin", bytes);
        var e = Assert.Throws<InputException>(() => LlmcCheckpoint.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains($"file is {bytes.Length} bytes", e.Message);
    }

    [Fact]
    public void Checkpoint_ShortOrMissingFile()
    {
        var path = Write("short.bin", new byte[100]);
        var e = Assert.Throws<InputException>(() => LlmcCheckpoint.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("shorter than", e.Message);

        var missing = _dir.File("missing.bin");
        e = Assert.Throws<InputException>(() => LlmcCheckpoint.Read(missing));
        Assert.StartsWith(missing + ": ", e.Message);
        Assert.Contains("not found", e.Message);
    }

    // ---------- token shards ----------

    [Fact]
    public void Shard_RoundTrip()
    {
        var tokens = new[] { 0, 1, 50256, 65535, 42, 0 };
        var path = _dir.File("shard_000.bin");
        TokenShard.Write(path, tokens);
        Assert.Equal(tokens, TokenShard.Read(path));

        var bytes = File.ReadAllBytes(path);
        Assert.Equal(1024 + 2 * tokens.Length, bytes.Length);
        Assert.Equal(20240520, BinaryPrimitives.ReadInt32LittleEndian(bytes));
        Assert.Equal(1, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4)));
        Assert.Equal(tokens.Length, BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)));
        Assert.Equal(50256, BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(1024 + 4)));
        Assert.Equal(["shard_000.bin"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Shard_Empty_RoundTrip()
    {
        var path = _dir.File("empty.bin");
        TokenShard.Write(path, []);
        Assert.Empty(TokenShard.Read(path));
    }

    [Theory]
    [InlineData(65536)]
    [InlineData(-1)]
    public void Shard_Write_TokenOutOfRange_Throws_AndWritesNothing(int bad)
    {
        var path = _dir.File("bad.bin");
        var e = Assert.Throws<InputException>(() => TokenShard.Write(path, [1, 2, bad]));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("index 2", e.Message);
        Assert.Empty(Directory.GetFiles(_dir.Path));
    }

    [Theory]
    [InlineData("magic", 0, 20240326, "magic")]
    [InlineData("version", 1, 2, "version 2")]
    [InlineData("count-high", 2, 5, "5 tokens")]
    [InlineData("count-low", 2, 3, "3 tokens")]
    [InlineData("count-neg", 2, -1, "negative")]
    public void Shard_Corrupt_ThrowsInputException(string name, int index, int value, string fragment)
    {
        var path = _dir.File(name + ".bin");
        TokenShard.Write(path, [7, 8, 9, 10]);
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * index), value);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InputException>(() => TokenShard.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(fragment, e.Message);
    }

    [Fact]
    public void Shard_Truncated_ThrowsInputException()
    {
        var path = _dir.File("trunc.bin");
        TokenShard.Write(path, [7, 8, 9, 10]);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^1]);
        var e = Assert.Throws<InputException>(() => TokenShard.Read(path));
        Assert.StartsWith(path + ": ", e.Message);

        File.WriteAllBytes(path, bytes[..10]);
        e = Assert.Throws<InputException>(() => TokenShard.Read(path));
        Assert.Contains("shorter than", e.Message);
    }
}
