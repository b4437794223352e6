using System.Buffers.Binary;
using System.Text;
using MiniTransformer.IO;

namespace MiniTransformer.Tests.IO;

/// <summary>A fresh temporary folder per test class instance, removed afterwards.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "mt-io-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

public sealed class SafeTensorsTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    // ---------- helpers ----------

    /// <summary>Builds a safetensors file from a raw header string and a data section.</summary>
    private static byte[] RawFile(string headerJson, byte[] data)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        return RawFile(header, data);
    }

    private static byte[] RawFile(byte[] header, byte[] data)
    {
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    private string WriteRaw(string name, byte[] bytes)
    {
        var p = _dir.File(name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    private static byte[] Bytes(params ushort[] values)
    {
        var b = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2 * i), values[i]);
        return b;
    }

    // ---------- round trips ----------

    [Fact]
    public void RoundTrip_EveryDtype_PreservesOrderShapesBytesAndMetadata()
    {
        var rng = new Random(1234);
        var tensors = new List<StTensor>();
        foreach (StDType dt in Enum.GetValues<StDType>())
        {
            long[] shape = [2, 3];
            var bytes = new byte[6 * StDTypeInfo.SizeOf(dt)];
            rng.NextBytes(bytes);
            if (dt == StDType.BOOL) for (int i = 0; i < bytes.Length; i++) bytes[i] &= 1;
            tensors.Add(new StTensor("t_" + dt, dt, shape, bytes));
        }
        tensors.Reverse(); // order in file must follow the given order, not the enum
        tensors.Add(new StTensor("scalar", StDType.F32, [], BitConverter.GetBytes(2.5f)));
        tensors.Add(new StTensor("empty", StDType.F64, [0, 7], []));
        tensors.Add(StTensor.FromFloats("ünïcode/ключ \"quoted\"", [1f, 2f], 2));

        var meta = new Dictionary<string, string> { ["format"] = "pt", ["config"] = "{\"n_layer\": 2}", ["ü"] = "ß" };
        var path = _dir.File("all.safetensors");
        SafeTensors.Write(path, tensors, meta);

        var f = SafeTensors.Read(path);
        Assert.Equal(path, f.Path);
        Assert.Equal(tensors.Select(t => t.Name), f.Tensors.Select(t => t.Name));
        foreach (var t in tensors)
        {
            var r = f[t.Name];
            Assert.Equal(t.DType, r.DType);
            Assert.Equal(t.Shape, r.Shape);
            Assert.Equal(t.Bytes, r.Bytes);
            Assert.Equal(t.ElementCount, r.ElementCount);
        }
        Assert.Equal(meta.OrderBy(kv => kv.Key), f.Metadata.OrderBy(kv => kv.Key));
        Assert.Equal(1, f["scalar"].ElementCount);
        Assert.Equal(0, f["empty"].ElementCount);
        Assert.Equal([2.5f], f["scalar"].ToFloats());
    }

    [Fact]
    public void Write_HeaderIsPaddedWithSpacesToMultipleOf8_AndMetadataComesFirst()
    {
        var path = _dir.File("pad.safetensors");
        SafeTensors.Write(path, [StTensor.FromFloats("a", [1f, 2f, 3f], 3)], new Dictionary<string, string> { ["k"] = "v" });
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, n % 8);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.StartsWith("{\"__metadata__\":{\"k\":\"v\"},\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", header);
        Assert.True(header.Length - header.TrimEnd(' ').Length < 8);
        Assert.Equal(8 + n + 12, bytes.Length);
        Assert.Equal(1f, BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan((int)(8 + n))));
    }

    [Fact]
    public void Write_WithoutMetadata_ReadsEmptyMetadata()
    {
        var path = _dir.File("nometa.safetensors");
        SafeTensors.Write(path, [StTensor.FromInt32s("i", [1, -2], 2)]);
        var f = SafeTensors.Read(path);
        Assert.Empty(f.Metadata);
        Assert.Equal([1, -2], f["i"].ToInt32s());
    }

    [Fact]
    public void HandBuiltFile_MatchingSpec_IsReadCorrectly()
    {
        // Header lists tensors out of data order, metadata last, no padding, extra whitespace.
        string header = "{ \"b\" : {\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[8,24]},\n"
                      + "  \"a\":{\"shape\":[1,2],\"dtype\":\"F32\",\"data_offsets\":[0,8]},"
                      + "  \"__metadata__\":{\"format\":\"pt\"} }";
        var data = new byte[24];
        BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(0), 1.0f);
        BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4), -0.5f);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(8), 7);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(16), -3);
        var path = WriteRaw("hand.safetensors", RawFile(header, data));

        var f = SafeTensors.Read(path);
        Assert.Equal(["b", "a"], f.Tensors.Select(t => t.Name));
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(StDType.F32, f["a"].DType);
        Assert.Equal([1L, 2L], f["a"].Shape);
        Assert.Equal([1.0f, -0.5f], f["a"].ToFloats());
        Assert.Equal([1.0, -0.5], f["a"].ToDoubles());
        Assert.Equal([7L, -3L], f["b"].ToInt64s());
        Assert.Equal([7, -3], f["b"].ToInt32s());
        Assert.Equal([7.0, -3.0], f["b"].ToDoubles());
        Assert.True(f.TryGet("a", out var a));
        Assert.NotNull(a);
        Assert.False(f.TryGet("zz", out var none));
        Assert.Null(none);
    }

    // ---------- conversions ----------

    [Fact]
    public void F16_WidensExactly()
    {
        // 1.5, -2, 65504 (max), 2^-24 (smallest subnormal), 1023·2^-24 (largest subnormal), -0, +inf
        var t = new StTensor("h", StDType.F16, [7], Bytes(0x3E00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x8000, 0x7C00));
        double[] expected = [1.5, -2.0, 65504.0, Math.Pow(2, -24), 1023 * Math.Pow(2, -24), -0.0, double.PositiveInfinity];
        Assert.Equal(expected, t.ToDoubles());
        Assert.Equal(expected.Select(d => (float)d), t.ToFloats());
        Assert.True(double.IsNegative(t.ToDoubles()[5]));
        Assert.Throws<InputException>(() => t.ToInt64s());
    }

    [Fact]
    public void BF16_WidensExactly()
    {
        // 1.5, -2, 1, max finite (0x7F7F), smallest subnormal 2^-133, NaN
        var t = new StTensor("b", StDType.BF16, [6], Bytes(0x3FC0, 0xC000, 0x3F80, 0x7F7F, 0x0001, 0x7FC0));
        var d = t.ToDoubles();
        Assert.Equal(1.5, d[0]);
        Assert.Equal(-2.0, d[1]);
        Assert.Equal(1.0, d[2]);
        Assert.Equal((double)BitConverter.Int32BitsToSingle(0x7F7F0000), d[3]);
        Assert.Equal(3.3895313892515355e38, d[3]);
        Assert.Equal(Math.Pow(2, -133), d[4]);
        Assert.True(double.IsNaN(d[5]));
        var f = t.ToFloats();
        Assert.Equal(1.5f, f[0]);
        Assert.Equal(BitConverter.Int32BitsToSingle(1 << 16), f[4]);
    }

    [Fact]
    public void IntegerConversions_AllIntegerDtypes()
    {
        var i32 = StTensor.FromInt32s("i32", [int.MinValue, -1, 0, int.MaxValue], 2, 2);
        Assert.Equal([int.MinValue, -1, 0, int.MaxValue], i32.ToInt32s());
        Assert.Equal([(long)int.MinValue, -1, 0, int.MaxValue], i32.ToInt64s());
        Assert.Equal([(double)int.MinValue, -1, 0, int.MaxValue], i32.ToDoubles());

        var i64 = StTensor.FromInt64s("i64", [long.MinValue, 5, long.MaxValue], 3);
        Assert.Equal([long.MinValue, 5, long.MaxValue], i64.ToInt64s());
        var e = Assert.Throws<InputException>(() => i64.ToInt32s());
        Assert.Contains("'i64'", e.Message);
        Assert.Contains("int32", e.Message);
        Assert.Equal([5], StTensor.FromInt64s("small", [5], 1).ToInt32s());

        var u8 = new StTensor("u8", StDType.U8, [3], [0, 128, 255]);
        Assert.Equal([0L, 128, 255], u8.ToInt64s());
        Assert.Equal([0, 128, 255], u8.ToInt32s());
        Assert.Equal([0.0, 128, 255], u8.ToDoubles());
        Assert.Equal([0f, 128, 255], u8.ToFloats());

        var b = new StTensor("mask", StDType.BOOL, [3], [1, 0, 1]);
        Assert.Equal([1L, 0, 1], b.ToInt64s());
        Assert.Equal([1, 0, 1], b.ToInt32s());
        Assert.Equal([1.0, 0, 1], b.ToDoubles());
        Assert.Equal([1f, 0, 1], b.ToFloats());
    }

    [Fact]
    public void FloatDtypes_RefuseIntegerConversion_NamingTheTensor()
    {
        foreach (var t in new[]
                 {
                     StTensor.FromFloats("w.f32", [1f], 1),
                     StTensor.FromDoubles("w.f64", [1.0], 1),
                     new StTensor("w.f16", StDType.F16, [1], Bytes(0x3C00)),
                     new StTensor("w.bf16", StDType.BF16, [1], Bytes(0x3F80)),
                 })
        {
            var e1 = Assert.Throws<InputException>(() => t.ToInt64s());
            Assert.Contains($"'{t.Name}'", e1.Message);
            var e2 = Assert.Throws<InputException>(() => t.ToInt32s());
            Assert.Contains($"'{t.Name}'", e2.Message);
        }
    }

    [Fact]
    public void FloatConversions_F32AndF64()
    {
        var f32 = StTensor.FromFloats("f", [1.25f, -3f, float.Epsilon], 3);
        Assert.Equal([1.25f, -3f, float.Epsilon], f32.ToFloats());
        Assert.Equal([1.25, -3.0, (double)float.Epsilon], f32.ToDoubles());
        var f64 = StTensor.FromDoubles("d", [0.1, 1e300], 2);
        Assert.Equal([0.1, 1e300], f64.ToDoubles());
        Assert.Equal([0.1f, float.PositiveInfinity], f64.ToFloats());
    }

    [Fact]
    public void Constructors_ValidateSizes()
    {
        Assert.Throws<ArgumentException>(() => new StTensor("x", StDType.F32, [2, 2], new byte[15]));
        Assert.Throws<ArgumentException>(() => new StTensor("x", StDType.F32, [-1], []));
        Assert.Throws<ArgumentException>(() => StTensor.FromFloats("x", [1f, 2f, 3f], 2, 2));
        Assert.Throws<ArgumentException>(() => StTensor.FromDoubles("x", [1.0], 2));
        Assert.Throws<ArgumentException>(() => StTensor.FromInt32s("x", [1], 0));
        Assert.Throws<ArgumentException>(() => StTensor.FromInt64s("x", [1, 2], 3));
        var ok = StTensor.FromFloats("x", [1f, 2f, 3f, 4f, 5f, 6f], 2, 3);
        Assert.Equal([2L, 3L], ok.Shape);
        Assert.Equal(6, ok.ElementCount);
        Assert.Equal(24, ok.Bytes.Length);
        Assert.Equal(StDType.F32, ok.DType);
    }

    // ---------- validation ----------

    public static TheoryData<string, string, int, string> BadHeaders => new()
    {
        // name, header json, data length, expected message fragment
        { "not-json", "{\"a\":", 0, "not valid JSON" },
        { "not-object", "[1,2,3]", 0, "expected an object" },
        { "string-root", "\"hello\"", 0, "expected an object" },
        { "unknown-dtype", "{\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "'I8'" },
        { "lowercase-dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'f32'" },
        { "dtype-not-string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype" },
        { "missing-dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing 'dtype'" },
        { "missing-shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing 'shape'" },
        { "missing-offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing 'data_offsets'" },
        { "entry-not-object", "{\"a\":[1]}", 0, "tensor 'a'" },
        { "shape-not-list", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16, "non-negative integers" },
        { "shape-negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "non-negative integers" },
        { "shape-fraction", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "non-negative integers" },
        { "shape-string", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "non-negative integers" },
        { "shape-overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows" },
        { "bytesize-overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}}", 4, "overflows" },
        { "offsets-three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "two non-negative integers" },
        { "offsets-one", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, "two non-negative integers" },
        { "offsets-negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "two non-negative integers" },
        { "offsets-not-list", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0-4\"}}", 4, "two non-negative integers" },
        { "begin-after-end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "begin after" },
        { "outside-data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside the data section" },
        { "bytes-vs-shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12" },
        { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap" },
        { "same-range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlap" },
        { "gap-middle", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "gap" },
        { "gap-start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "gap" },
        { "gap-end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "gap" },
        { "no-tensors-but-data", "{}", 4, "gap" },
        { "duplicate-name", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "duplicate tensor name 'a'" },
        { "metadata-not-object", "{\"__metadata__\":[1]}", 0, "__metadata__" },
        { "metadata-not-string", "{\"__metadata__\":{\"n_layer\":12}}", 0, "expected a string" },
    };

    [Theory]
    [MemberData(nameof(BadHeaders))]
    public void Read_InvalidHeader_ThrowsInputExceptionNamingPathAndProblem(string name, string header, int dataLength, string fragment)
    {
        var path = WriteRaw(name + ".safetensors", RawFile(header, new byte[dataLength]));
        var e = Assert.Throws<InputException>(() => SafeTensors.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(fragment, e.Message);
    }

    [Fact]
    public void Read_EmptyHeaderObject_NoData_IsAnEmptyFile()
    {
        var path = WriteRaw("empty.safetensors", RawFile("{}      ", []));
        var f = SafeTensors.Read(path);
        Assert.Empty(f.Tensors);
        Assert.Empty(f.Metadata);
    }

    [Fact]
    public void Read_TensorsInAnyDataOrder_AndZeroSizedTensors_AreAccepted()
    {
        string header = "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                      + "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]},"
                      + "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}";
        var data = new byte[8];
        BinaryPrimitives.WriteSingleLittleEndian(data, 3.5f);
        data[4] = 9;
        var f = SafeTensors.Read(WriteRaw("order.safetensors", RawFile(header, data)));
        Assert.Equal(["z", "b", "a"], f.Tensors.Select(t => t.Name));
        Assert.Equal([3.5f], f["a"].ToFloats());
        Assert.Empty(f["a"].Shape);
        Assert.Equal(9, f["b"].ToInt32s()[0]);
        Assert.Equal(0, f["z"].ElementCount);
    }

    [Fact]
    public void Read_MissingFile()
    {
        var path = _dir.File("nope.safetensors");
        var e = Assert.Throws<InputException>(() => SafeTensors.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Read_Directory()
    {
        var e = Assert.Throws<InputException>(() => SafeTensors.Read(_dir.Path));
        Assert.StartsWith(_dir.Path + ": ", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void Read_FileShorterThan8Bytes(int length)
    {
        var path = WriteRaw($"short{length}.safetensors", new byte[length]);
        var e = Assert.Throws<InputException>(() => SafeTensors.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("shorter than", e.Message);
    }

    [Fact]
    public void Read_HeaderLengthLargerThanFile()
    {
        var bytes = new byte[8 + 10];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 11);
        var path = WriteRaw("hdrlong.safetensors", bytes);
        var e = Assert.Throws<InputException>(() => SafeTensors.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("larger than the rest of the file", e.Message);
    }

    [Theory]
    [InlineData(100_000_001UL)]
    [InlineData(ulong.MaxValue)]
    [InlineData(1UL << 63)]
    public void Read_HeaderLengthOverLimit_DoesNotAllocate(ulong headerLength)
    {
        var bytes = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength);
        var path = WriteRaw("hdrhuge.safetensors", bytes);
        var e = Assert.Throws<InputException>(() => SafeTensors.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("exceeds the limit", e.Message);
    }

    [Fact]
    public void Read_InvalidUtf8()
    {
        var header = Encoding.UTF8.GetBytes("{\"__metadata__\":{\"k\":\"v?\"}}");
        header[Array.IndexOf(header, (byte)'?')] = 0xFF;
        var path = WriteRaw("utf8.safetensors", RawFile(header, []));
        var e = Assert.Throws<InputException>(() => SafeTensors.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    [Fact]
    public void Indexer_MissingTensor_NamesPathAndTensor()
    {
        var path = _dir.File("one.safetensors");
        SafeTensors.Write(path, [StTensor.FromFloats("a", [1f], 1)]);
        var f = SafeTensors.Read(path);
        var e = Assert.Throws<InputException>(() => f["zz"]);
        Assert.Equal($"{path}: no tensor named 'zz'", e.Message);
    }

    // ---------- writing ----------

    [Fact]
    public void Write_IsAtomic_LeavesNoTempFile_AndOverwrites()
    {
        var path = _dir.File("model.safetensors");
        SafeTensors.Write(path, [StTensor.FromFloats("a", [1f], 1)]);
        SafeTensors.Write(path, [StTensor.FromFloats("b", [2f, 3f], 2)]);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
        var f = SafeTensors.Read(path);
        Assert.Equal(["b"], f.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void AtomicWrite_OnFailure_DeletesTempAndKeepsOldFile()
    {
        var path = _dir.File("keep.bin");
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[100]);
            throw new IOException("disk full (simulated)");
        }));
        Assert.Equal(["keep.bin"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
    }

    [Fact]
    public void Write_DuplicateOrReservedNames_AreRejected_WithoutCreatingFiles()
    {
        var path = _dir.File("dup.safetensors");
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path,
            [StTensor.FromFloats("a", [1f], 1), StTensor.FromFloats("a", [2f], 1)]));
        Assert.Throws<ArgumentException>(() => SafeTensors.Write(path, [StTensor.FromFloats("__metadata__", [1f], 1)]));
        Assert.Empty(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void Write_MissingDirectory_IsInputException()
    {
        var path = Path.Combine(_dir.Path, "no", "such", "dir", "x.safetensors");
        var e = Assert.Throws<InputException>(() => SafeTensors.Write(path, [StTensor.FromFloats("a", [1f], 1)]));
        Assert.StartsWith(path + ": ", e.Message);
    }
}
