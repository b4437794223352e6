using System.Numerics;
using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace MiniTransformer.IO;

/// <summary>Element types of a safetensors file; names match the header's <c>"dtype"</c> strings.</summary>
public enum StDType { F32, F64, F16, BF16, I32, I64, U8, BOOL }

/// <summary>Helpers for <see cref="StDType"/>.</summary>
public static class StDTypeInfo
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(StDType dtype) => dtype switch
    {
        StDType.F32 => 4,
        StDType.F64 => 8,
        StDType.F16 => 2,
        StDType.BF16 => 2,
        StDType.I32 => 4,
        StDType.I64 => 8,
        StDType.U8 => 1,
        StDType.BOOL => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The header name ("F32", "BF16", ...).</summary>
    public static string Name(StDType dtype) => dtype.ToString();

    /// <summary>Parses a header dtype name (exact, case-sensitive, as the format requires).</summary>
    public static bool TryParse(string? name, out StDType dtype)
    {
        switch (name)
        {
            case "F32": dtype = StDType.F32; return true;
            case "F64": dtype = StDType.F64; return true;
            case "F16": dtype = StDType.F16; return true;
            case "BF16": dtype = StDType.BF16; return true;
            case "I32": dtype = StDType.I32; return true;
            case "I64": dtype = StDType.I64; return true;
            case "U8": dtype = StDType.U8; return true;
            case "BOOL": dtype = StDType.BOOL; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>True for F32, F64, F16, BF16.</summary>
    public static bool IsFloat(StDType dtype) =>
        dtype is StDType.F32 or StDType.F64 or StDType.F16 or StDType.BF16;
}

/// <summary>
/// One named tensor as stored in a safetensors file: dtype, shape and the raw little-endian bytes.
/// </summary>
public sealed class StTensor
{
    /// <summary>
    /// Creates a tensor over <paramref name="bytes"/> (not copied). Throws <see cref="ArgumentException"/>
    /// if a dimension is negative, the element count overflows, or the byte length is not prod(shape)·size.
    /// </summary>
    public StTensor(string name, StDType dtype, long[] shape, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(bytes);
        int size = StDTypeInfo.SizeOf(dtype);
        long count = ElementCountOf(shape, name);
        long expected;
        try { expected = checked(count * size); }
        catch (OverflowException) { throw new ArgumentException($"tensor '{name}': byte size overflows", nameof(shape)); }
        if (bytes.LongLength != expected)
            throw new ArgumentException(
                $"tensor '{name}': {bytes.LongLength} bytes, but shape [{string.Join(", ", shape)}] of {dtype} needs {expected}",
                nameof(bytes));
        Name = name;
        DType = dtype;
        Shape = (long[])shape.Clone();
        Bytes = bytes;
        ElementCount = count;
    }

    /// <summary>The tensor's name (the key in the file header).</summary>
    public string Name { get; }
    /// <summary>Element type.</summary>
    public StDType DType { get; }
    /// <summary>Dimensions, row-major; empty for a scalar.</summary>
    public long[] Shape { get; }
    /// <summary>Raw little-endian element bytes, row-major.</summary>
    public byte[] Bytes { get; }
    /// <summary>Product of <see cref="Shape"/> (1 for a scalar).</summary>
    public long ElementCount { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Name}: {DType}[{string.Join(", ", Shape)}]";

    private static long ElementCountOf(long[] shape, string name)
    {
        foreach (long d in shape)
            if (d < 0) throw new ArgumentException($"tensor '{name}': negative dimension {d}", nameof(shape));
        if (Array.IndexOf(shape, 0L) >= 0) return 0;
        long count = 1;
        foreach (long d in shape)
        {
            try { count = checked(count * d); }
            catch (OverflowException) { throw new ArgumentException($"tensor '{name}': element count overflows", nameof(shape)); }
        }
        return count;
    }

    /// <summary>All elements as float64. F16/BF16/F32 widen exactly; integers convert; BOOL gives 0/1.</summary>
    public double[] ToDoubles() => Convert<double>();

    /// <summary>All elements as float32 (F64 and I64 round to nearest; the others are exact).</summary>
    public float[] ToFloats()
    {
        if (DType == StDType.F32 && BitConverter.IsLittleEndian) return MemoryMarshal.Cast<byte, float>(Bytes).ToArray();
        return Convert<float>();
    }

    /// <summary>All elements as int64, for I32/I64/U8/BOOL; float dtypes throw <see cref="InputException"/>.</summary>
    public long[] ToInt64s()
    {
        RequireInteger("int64");
        return Convert<long>();
    }

    /// <summary>
    /// Every element converted to <typeparamref name="T"/> (the loop per dtype, so the switch is taken once):
    /// floating-point targets round to nearest, integer targets take integer sources exactly.
    /// </summary>
    private T[] Convert<T>() where T : INumberBase<T>
    {
        var result = new T[ElementCount];
        ReadOnlySpan<byte> b = Bytes;
        switch (DType)
        {
            case StDType.F64:
                for (int i = 0; i < result.Length; i++) result[i] = T.CreateTruncating(BinaryPrimitives.ReadDoubleLittleEndian(b[(8 * i)..]));
                break;
            case StDType.F32:
                for (int i = 0; i < result.Length; i++) result[i] = T.CreateTruncating(BinaryPrimitives.ReadSingleLittleEndian(b[(4 * i)..]));
                break;
            case StDType.F16:
                for (int i = 0; i < result.Length; i++) result[i] = T.CreateTruncating((float)BinaryPrimitives.ReadHalfLittleEndian(b[(2 * i)..]));
                break;
            case StDType.BF16:
                for (int i = 0; i < result.Length; i++) result[i] = T.CreateTruncating(BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(b[(2 * i)..])));
                break;
            case StDType.I32:
                for (int i = 0; i < result.Length; i++) result[i] = T.CreateTruncating(BinaryPrimitives.ReadInt32LittleEndian(b[(4 * i)..]));
                break;
            case StDType.I64:
                for (int i = 0; i < result.Length; i++) result[i] = T.CreateTruncating(BinaryPrimitives.ReadInt64LittleEndian(b[(8 * i)..]));
                break;
            case StDType.U8:
                for (int i = 0; i < result.Length; i++) result[i] = T.CreateTruncating(b[i]);
                break;
            case StDType.BOOL:
                for (int i = 0; i < result.Length; i++) result[i] = b[i] != 0 ? T.One : T.Zero;
                break;
        }
        return result;
    }

    /// <summary>All elements as int32, for I32/I64/U8/BOOL; float dtypes and out-of-range I64 values throw <see cref="InputException"/>.</summary>
    public int[] ToInt32s()
    {
        RequireInteger("int32");
        var result = new int[ElementCount];
        ReadOnlySpan<byte> b = Bytes;
        switch (DType)
        {
            case StDType.I32:
                for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadInt32LittleEndian(b[(4 * i)..]);
                break;
            case StDType.I64:
                for (int i = 0; i < result.Length; i++)
                {
                    long v = BinaryPrimitives.ReadInt64LittleEndian(b[(8 * i)..]);
                    if (v < int.MinValue || v > int.MaxValue)
                        throw new InputException($"tensor '{Name}': element {i} = {v} does not fit in int32");
                    result[i] = (int)v;
                }
                break;
            case StDType.U8:
                for (int i = 0; i < result.Length; i++) result[i] = b[i];
                break;
            case StDType.BOOL:
                for (int i = 0; i < result.Length; i++) result[i] = b[i] != 0 ? 1 : 0;
                break;
        }
        return result;
    }

    private void RequireInteger(string target)
    {
        if (StDTypeInfo.IsFloat(DType))
            throw new InputException($"tensor '{Name}': dtype {DType} is a floating-point type; cannot read it as {target}");
    }

    /// <summary>Widens a bfloat16 bit pattern to float32 (exact).</summary>
    internal static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>A F32 tensor from <paramref name="data"/> with the given shape (empty shape = scalar).</summary>
    public static StTensor FromFloats(string name, ReadOnlySpan<float> data, params long[] shape)
    {
        var bytes = AllocFor(name, data.Length, shape, 4);
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(data).CopyTo(bytes);
        else for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), data[i]);
        return new StTensor(name, StDType.F32, shape, bytes);
    }

    /// <summary>A F64 tensor from <paramref name="data"/> with the given shape (empty shape = scalar).</summary>
    public static StTensor FromDoubles(string name, ReadOnlySpan<double> data, params long[] shape)
    {
        var bytes = AllocFor(name, data.Length, shape, 8);
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(data).CopyTo(bytes);
        else for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(8 * i), data[i]);
        return new StTensor(name, StDType.F64, shape, bytes);
    }

    /// <summary>An I32 tensor from <paramref name="data"/> with the given shape (empty shape = scalar).</summary>
    public static StTensor FromInt32s(string name, ReadOnlySpan<int> data, params long[] shape)
    {
        var bytes = AllocFor(name, data.Length, shape, 4);
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(data).CopyTo(bytes);
        else for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * i), data[i]);
        return new StTensor(name, StDType.I32, shape, bytes);
    }

    /// <summary>An I64 tensor from <paramref name="data"/> with the given shape (empty shape = scalar).</summary>
    public static StTensor FromInt64s(string name, ReadOnlySpan<long> data, params long[] shape)
    {
        var bytes = AllocFor(name, data.Length, shape, 8);
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(data).CopyTo(bytes);
        else for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8 * i), data[i]);
        return new StTensor(name, StDType.I64, shape, bytes);
    }

    private static byte[] AllocFor(string name, int length, long[] shape, int size)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        long count = ElementCountOf(shape, name);
        if (count != length)
            throw new ArgumentException(
                $"tensor '{name}': {length} values given, but shape [{string.Join(", ", shape)}] holds {count}", nameof(shape));
        return new byte[(long)length * size];
    }
}

/// <summary>The parsed content of a safetensors file.</summary>
public sealed class SafeTensorFile
{
    private readonly Dictionary<string, StTensor> _byName;

    internal SafeTensorFile(string path, List<StTensor> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        Tensors = tensors.AsReadOnly();
        Metadata = metadata.AsReadOnly();
        _byName = new Dictionary<string, StTensor>(tensors.Count, StringComparer.Ordinal);
        foreach (var t in tensors) _byName.Add(t.Name, t);
    }

    /// <summary>The path the file was read from.</summary>
    public string Path { get; }

    /// <summary>The tensors in the order the header lists them.</summary>
    public IReadOnlyList<StTensor> Tensors { get; }

    /// <summary>The header's <c>__metadata__</c> map (empty if absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensor named <paramref name="name"/>; <see cref="InputException"/> if there is none.</summary>
    public StTensor this[string name] =>
        _byName.TryGetValue(name, out var t) ? t : throw new InputException($"{Path}: no tensor named '{name}'");

    /// <summary>Looks up a tensor by name.</summary>
    public bool TryGet(string name, [NotNullWhen(true)] out StTensor? t) => _byName.TryGetValue(name, out t);
}

/// <summary>
/// Reader and writer of the safetensors format: an 8-byte little-endian header length N, N bytes of
/// UTF-8 JSON, then the data section, which the tensors' <c>data_offsets</c> tile exactly.
/// </summary>
public static class SafeTensors
{
    /// <summary>Largest header accepted (the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private readonly record struct Entry(string Name, StDType DType, long[] Shape, long Begin, long End);

    /// <summary>Reads and fully validates a safetensors file. Every problem is an <see cref="InputException"/> "&lt;path&gt;: ...".</summary>
    public static SafeTensorFile Read(string path)
    {
        using var handle = BinaryFile.OpenRead(path);
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
            throw new InputException($"{path}: file is {fileLength} bytes, shorter than the 8-byte header length of a safetensors file");

        Span<byte> lenBuf = stackalloc byte[8];
        BinaryFile.ReadExactly(handle, lenBuf, 0, path);
        ulong headerLenU = BinaryPrimitives.ReadUInt64LittleEndian(lenBuf);
        if (headerLenU > MaxHeaderBytes)
            throw new InputException($"{path}: header length {headerLenU} exceeds the limit of {MaxHeaderBytes} bytes");
        long headerLen = (long)headerLenU;
        if (headerLen > fileLength - 8)
            throw new InputException($"{path}: header length {headerLen} is larger than the rest of the file ({fileLength - 8} bytes)");

        var headerBytes = new byte[headerLen];
        BinaryFile.ReadExactly(handle, headerBytes, 8, path);
        long dataStart = 8 + headerLen;
        long dataLength = fileLength - dataStart;

        var (entries, metadata) = ParseHeader(path, headerBytes, dataLength);
        CheckTiling(path, entries, dataLength);

        var tensors = new List<StTensor>(entries.Count);
        foreach (var e in entries)
        {
            long n = e.End - e.Begin;
            if (n > Array.MaxLength)
                throw new InputException($"{path}: tensor '{e.Name}' is {n} bytes, larger than this reader supports ({Array.MaxLength})");
            var bytes = new byte[n];
            BinaryFile.ReadExactly(handle, bytes, dataStart + e.Begin, path);
            tensors.Add(new StTensor(e.Name, e.DType, e.Shape, bytes));
        }
        return new SafeTensorFile(path, tensors, metadata);
    }

    private static (List<Entry>, Dictionary<string, string>) ParseHeader(string path, byte[] headerBytes, long dataLength)
    {
        try
        {
            _ = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetCharCount(headerBytes);
        }
        catch (DecoderFallbackException)
        {
            throw new InputException($"{path}: header is not valid UTF-8");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerBytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            throw new InputException($"{path}: header is not valid JSON ({ex.Message})");
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InputException($"{path}: header is a JSON {Kind(root.ValueKind)}, expected an object");

            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            bool sawMetadata = false;

            foreach (var prop in root.EnumerateObject())
            {
                string name = prop.Name;
                if (name == MetadataKey)
                {
                    if (sawMetadata) throw new InputException($"{path}: duplicate '{MetadataKey}' entry");
                    sawMetadata = true;
                    ParseMetadata(path, prop.Value, metadata);
                    continue;
                }
                if (!seen.Add(name))
                    throw new InputException($"{path}: duplicate tensor name '{name}'");
                entries.Add(ParseEntry(path, name, prop.Value, dataLength));
            }
            return (entries, metadata);
        }
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw new InputException($"{path}: '{MetadataKey}' is a JSON {Kind(value.ValueKind)}, expected an object of strings");
        foreach (var kv in value.EnumerateObject())
        {
            if (kv.Value.ValueKind != JsonValueKind.String)
                throw new InputException($"{path}: '{MetadataKey}' entry '{kv.Name}' is a JSON {Kind(kv.Value.ValueKind)}, expected a string");
            if (!metadata.TryAdd(kv.Name, kv.Value.GetString()!))
                throw new InputException($"{path}: duplicate '{MetadataKey}' key '{kv.Name}'");
        }
    }

    private static Entry ParseEntry(string path, string name, JsonElement value, long dataLength)
    {
        string where = $"{path}: tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
            throw new InputException($"{where}: entry is a JSON {Kind(value.ValueKind)}, expected an object with dtype, shape, data_offsets");

        JsonElement? dtypeEl = null, shapeEl = null, offsetsEl = null;
        foreach (var p in value.EnumerateObject())
        {
            switch (p.Name)
            {
                case "dtype": if (dtypeEl is not null) throw Dup("dtype"); dtypeEl = p.Value; break;
                case "shape": if (shapeEl is not null) throw Dup("shape"); shapeEl = p.Value; break;
                case "data_offsets": if (offsetsEl is not null) throw Dup("data_offsets"); offsetsEl = p.Value; break;
                default: break; // unknown keys are ignored
            }
        }
        InputException Dup(string key) => new($"{where}: duplicate key '{key}'");

        if (dtypeEl is null) throw new InputException($"{where}: missing 'dtype'");
        if (shapeEl is null) throw new InputException($"{where}: missing 'shape'");
        if (offsetsEl is null) throw new InputException($"{where}: missing 'data_offsets'");

        if (dtypeEl.Value.ValueKind != JsonValueKind.String)
            throw new InputException($"{where}: 'dtype' is a JSON {Kind(dtypeEl.Value.ValueKind)}, expected a string");
        string dtypeName = dtypeEl.Value.GetString()!;
        if (!StDTypeInfo.TryParse(dtypeName, out var dtype))
            throw new InputException($"{where}: unknown or unsupported dtype '{dtypeName}' (supported: F32, F64, F16, BF16, I32, I64, U8, BOOL)");

        var shapeJ = shapeEl.Value;
        if (shapeJ.ValueKind != JsonValueKind.Array)
            throw new InputException($"{where}: 'shape' is not a list of non-negative integers");
        var shape = new long[shapeJ.GetArrayLength()];
        int k = 0;
        long count = 1;
        bool overflow = false;
        foreach (var d in shapeJ.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw new InputException($"{where}: 'shape' is not a list of non-negative integers (element {k}: {d.GetRawText()})");
            shape[k++] = dim;
            // An overflow only matters if no later dimension is zero.
            if (!overflow)
            {
                try { count = checked(count * dim); }
                catch (OverflowException) { overflow = true; }
            }
        }
        if (Array.IndexOf(shape, 0L) >= 0) { count = 0; overflow = false; }
        if (overflow)
            throw new InputException($"{where}: element count of shape [{string.Join(", ", shape)}] overflows");
        int size = StDTypeInfo.SizeOf(dtype);
        if (count > long.MaxValue / size)
            throw new InputException($"{where}: byte size of shape [{string.Join(", ", shape)}] overflows");
        long nbytes = count * size;

        var offJ = offsetsEl.Value;
        if (offJ.ValueKind != JsonValueKind.Array || offJ.GetArrayLength() != 2)
            throw new InputException($"{where}: 'data_offsets' is not a list of two non-negative integers");
        var offs = new long[2];
        int j = 0;
        foreach (var o in offJ.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out long v) || v < 0)
                throw new InputException($"{where}: 'data_offsets' is not a list of two non-negative integers (element {j}: {o.GetRawText()})");
            offs[j++] = v;
        }
        long begin = offs[0], end = offs[1];
        if (begin > end)
            throw new InputException($"{where}: data_offsets [{begin}, {end}] begin after they end");
        if (end > dataLength)
            throw new InputException($"{where}: data_offsets [{begin}, {end}] lie outside the data section ({dataLength} bytes)");
        if (end - begin != nbytes)
            throw new InputException(
                $"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes, but shape [{string.Join(", ", shape)}] of {dtype} needs {nbytes}");

        return new Entry(name, dtype, shape, begin, end);
    }

    private static void CheckTiling(string path, List<Entry> entries, long dataLength)
    {
        var sorted = entries.ToArray();
        Array.Sort(sorted, static (a, b) =>
        {
            int c = a.Begin.CompareTo(b.Begin);
            return c != 0 ? c : a.End.CompareTo(b.End);
        });
        long pos = 0;
        string prev = "";
        foreach (var e in sorted)
        {
            if (e.Begin < pos)
                throw new InputException($"{path}: tensors '{prev}' and '{e.Name}' overlap in the data section (byte {e.Begin} < {pos})");
            if (e.Begin > pos)
                throw new InputException(
                    prev.Length == 0
                        ? $"{path}: gap in the data section: bytes [0, {e.Begin}) belong to no tensor"
                        : $"{path}: gap in the data section: bytes [{pos}, {e.Begin}) between '{prev}' and '{e.Name}' belong to no tensor");
            pos = e.End;
            prev = e.Name;
        }
        if (pos != dataLength)
            throw new InputException($"{path}: gap in the data section: bytes [{pos}, {dataLength}) at the end belong to no tensor");
    }

    private static string Kind(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "value",
    };

    /// <summary>
    /// Writes <paramref name="tensors"/> (header and data in the given order) and optional metadata to
    /// <paramref name="path"/> atomically. The header is padded with spaces to a multiple of 8 bytes.
    /// </summary>
    public static void Write(string path, IEnumerable<StTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        byte[] header = BuildHeader(list, metadata);

        AtomicFile.Write(path, stream =>
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            stream.Write(len);
            stream.Write(header);
            foreach (var t in list) stream.Write(t.Bytes);
        });
    }

    private static byte[] BuildHeader(List<StTensor> list, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in list)
        {
            ArgumentNullException.ThrowIfNull(t, nameof(list));
            if (t.Name == MetadataKey)
                throw new ArgumentException($"a tensor may not be named '{MetadataKey}'");
            if (!names.Add(t.Name))
                throw new ArgumentException($"duplicate tensor name '{t.Name}'");
        }

        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata is not null && metadata.Count > 0)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var kv in metadata)
                {
                    ArgumentNullException.ThrowIfNull(kv.Value, $"metadata['{kv.Key}']");
                    w.WriteString(kv.Key, kv.Value);
                }
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in list)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", StDTypeInfo.Name(t.DType));
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                offset += t.Bytes.LongLength;
                w.WriteNumberValue(offset);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }
}
