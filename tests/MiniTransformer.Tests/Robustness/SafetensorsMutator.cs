using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace MiniTransformer.Tests.Robustness;

/// <summary>
/// Generates broken variants of a valid safetensors file by systematic mutation: truncation at every region boundary
/// and at many byte offsets, header lengths, invalid UTF-8 and JSON, wrong roots, and per tensor every way a
/// dtype, shape or data_offsets entry can be wrong, plus duplicates, overlaps and gaps. Each case carries a keyword its
/// error must contain, when one is certain.
/// </summary>
sealed class SafetensorsMutator
{
    public sealed record Case(string Family, string Name, byte[] Bytes, string? Expect);

    sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End)
    {
        public string Body(string? dtype = null, string? shape = null, string? offsets = null, string? extra = null) =>
            "{" + string.Join(",", new[]
            {
                dtype == "" ? null : $"\"dtype\":{dtype ?? $"\"{DType}\""}",
                shape == "" ? null : $"\"shape\":{shape ?? "[" + string.Join(",", Shape) + "]"}",
                offsets == "" ? null : $"\"data_offsets\":{offsets ?? $"[{Begin},{End}]"}",
                extra,
            }.Where(x => x is not null)) + "}";
    }

    readonly byte[] original;
    readonly long headerLen;
    readonly string metadata;   // raw JSON of __metadata__, or null
    readonly List<Entry> entries = [];
    readonly byte[] data;

    public SafetensorsMutator(byte[] file)
    {
        original = file;
        headerLen = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        using var doc = JsonDocument.Parse(file.AsMemory(8, (int)headerLen));
        metadata = "";
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") { metadata = p.Value.GetRawText(); continue; }
            var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            entries.Add(new Entry(p.Name, p.Value.GetProperty("dtype").GetString()!,
                [.. p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64())], offs[0], offs[1]));
        }
        data = file[(int)(8 + headerLen)..];
    }

    public static byte[] Compose(byte[] header, byte[] data, ulong? declaredLength = null)
    {
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredLength ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    static byte[] Compose(string header, byte[] data) => Compose(Encoding.UTF8.GetBytes(header), data);

    string Header(IEnumerable<(string Key, string Raw)> items, bool withMeta = true) =>
        "{" + string.Join(",", (withMeta && metadata != "" ? new[] { ("__metadata__", metadata) } : []).Concat(items)
            .Select(kv => $"\"{kv.Item1}\":{kv.Item2}")) + "}";

    string Header(Func<int, Entry, string?> body) =>
        Header(entries.Select((e, i) => (e.Name, body(i, e))).Where(kv => kv.Item2 is not null).Select(kv => (kv.Name, kv.Item2!)));

    /// <summary>The file rebuilt from its parsed form (must read back as valid).</summary>
    public byte[] Rebuilt => Compose(Header((_, e) => e.Body()), data);

    /// <summary>Mutations that keep the file valid; the tool must accept every one.</summary>
    public IEnumerable<Case> Controls()
    {
        yield return new("control", "original", original, null);
        yield return new("control", "rebuilt without padding", Rebuilt, null);
        yield return new("control", "unknown key in an entry", Compose(Header((i, e) => i == 0 ? e.Body(extra: "\"comment\":[1,{\"a\":null}]") : e.Body()), data), null);
        yield return new("control", "entries in reverse order", Compose(Header(entries.AsEnumerable().Reverse().Select(e => (e.Name, e.Body()))), data), null);
        yield return new("control", "no metadata", Compose(Header(entries.Select(e => (e.Name, e.Body())), withMeta: false), data), null);
        if (data.Length > 0)
        {
            var flipped = (byte[])original.Clone();
            flipped[8 + headerLen] ^= 0x01;   // the lowest bit of the first element
            yield return new("control", "a data byte changed", flipped, null);
        }
    }

    /// <summary>Every broken variant.</summary>
    public IEnumerable<Case> Broken()
    {
        long fileLen = original.Length, dataStart = 8 + headerLen;

        // 1. Truncation: every byte of the length field and the start of the header, every 11th header byte, every
        //    region boundary (length field, header, each tensor's start and end) ±1, every 17th data byte.
        var cuts = new SortedSet<long>();
        for (long i = 0; i <= 24; i++) cuts.Add(i);
        for (long i = 8; i < dataStart; i += 11) cuts.Add(i);
        foreach (long b in new[] { 8L, dataStart }.Concat(entries.SelectMany(e => new[] { dataStart + e.Begin, dataStart + e.End })))
            for (long d = -1; d <= 1; d++) cuts.Add(b + d);
        for (long i = dataStart; i < fileLen; i += 17) cuts.Add(i);
        cuts.Add(fileLen - 1);
        foreach (long n in cuts.Where(n => n >= 0 && n < fileLen))
            yield return new("truncated", $"to {n} of {fileLen} bytes", original[..(int)n], n < 8 ? "shorter than" : null);
        var longer = original.Concat(new byte[] { 0, 0, 0, 0 }).ToArray();
        yield return new("truncated", "4 bytes appended", longer, "gap");

        // 2. The header length field.
        var header = original[8..(int)dataStart];
        foreach (ulong n in new ulong[] { 0, 1, 2, (ulong)headerLen - 1, (ulong)headerLen + 1, (ulong)(fileLen - 8 + 1), 99_999_999, 100_000_000,
                     100_000_001, 1UL << 32, (1UL << 32) + (ulong)headerLen, (1UL << 63) + (ulong)headerLen, ulong.MaxValue })
            yield return new("header length", $"declared {n}", Compose(header, data, n), n > 100_000_000 ? "exceeds the limit" : null);

        // 3. Invalid UTF-8 in the header: at the start of every tensor name, and in the metadata.
        byte[][] bad = [[0xFF], [0xC0, 0x80], [0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]];
        string text = Encoding.UTF8.GetString(header);
        var positions = entries.Select(e => text.IndexOf("\"" + e.Name + "\"", StringComparison.Ordinal) + 1).ToList();
        if (metadata != "") positions.Add(text.IndexOf("__metadata__", StringComparison.Ordinal) + 2);
        for (int k = 0; k < positions.Count; k++)
        {
            var seq = bad[k % bad.Length];
            var h = header[..positions[k]].Concat(seq).Concat(header[positions[k]..]).ToArray();
            yield return new("utf8", $"{Convert.ToHexString(seq)} at header byte {positions[k]}", Compose(h, data), "UTF-8");
        }

        // 4. Invalid JSON: every third structural character replaced by a space (kept only if it is then invalid).
        int seen = 0;
        for (int i = 0; i < header.Length; i++)
        {
            if ("{}[]:,\"".IndexOf((char)header[i]) < 0 || seen++ % 3 != 0) continue;
            var h = (byte[])header.Clone();
            h[i] = (byte)' ';
            if (IsJson(h)) continue;
            yield return new("json", $"'{(char)header[i]}' at header byte {i} removed", Compose(h, data), "JSON");
        }
        foreach (var (name, h) in new[]
        {
            ("trailing comma", text.TrimEnd()[..^1] + ",}"), ("comment", "/*x*/" + text), ("single quotes", text.Replace('"', '\'')),
            ("two objects", text.TrimEnd() + "{}"), ("NaN literal", Header(entries.Select((e, i) => (e.Name, i == 0 ? e.Body(shape: "[NaN]") : e.Body())))),
            ("nesting deeper than 16", Header(entries.Select((e, i) => (e.Name, i == 0 ? e.Body(extra: "\"x\":" + new string('[', 40) + new string(']', 40)) : e.Body())))),
            ("empty", ""), ("whitespace only", "        "),
        })
            yield return new("json", name, Compose(h, data), name.StartsWith("nesting") || name.StartsWith("empty") || name.StartsWith("white") || name == "NaN literal" ? null : "JSON");
        foreach (var root in new[] { "[]", "1", "\"x\"", "null", "true", "[{\"a\":1}]" })
            yield return new("json root", root, Compose(root, data), "expected an object");

        // 5. Per tensor: first, one in the middle, last.
        var picks = new[] { 0, entries.Count / 2, entries.Count - 1 }.Distinct();
        foreach (int k in picks)
        {
            var e = entries[k];
            string Mut(Func<Entry, string?> f) => Header((i, x) => i == k ? f(x) : x.Body());
            Case C(string family, string name, string hdr, string? expect) => new(family, $"{e.Name}: {name}", Compose(hdr, data), expect);

            foreach (var dt in new[] { "\"F8_E4M3\"", "\"f32\"", "\"Q4\"", "\"\"", "7", "null", "[]", "{}", "true" })
                yield return C("dtype", $"dtype {dt}", Mut(x => x.Body(dtype: dt)), "dtype");
            yield return C("dtype", "no dtype", Mut(x => x.Body(dtype: "")), "dtype");
            foreach (var dt in new[] { "F32", "F64", "F16", "BF16", "I32", "I64", "U8", "BOOL" }.Where(d => d != e.DType))
                yield return C("shape x dtype", $"dtype {dt} for {e.DType} bytes", Mut(x => x.Body(dtype: $"\"{dt}\"")),
                    Size(dt) == Size(e.DType) ? "dtype" : "needs");

            long[] s = e.Shape;
            string J(IEnumerable<long> dims) => "[" + string.Join(",", dims) + "]";
            foreach (var (name, sh, expect) in new (string, string, string?)[]
            {
                ("negative dimension", J(s.Prepend(-1)), "shape"), ("negative last dimension", J(s.Append(-2)), "shape"),
                ("dimension + 1", J(s.Length == 0 ? [2] : s[..^1].Append(s[^1] + 1)), "needs"),
                ("extra dimension 2", J(s.Append(2)), "needs"), ("scalar", "[]", s.Aggregate(1L, (a, b) => a * b) == 1 ? null : "needs"),
                ("overflowing element count", J([1L << 40, 1L << 40]), "overflows"), ("overflowing byte count", J([1L << 62]), "overflows"),
                ("long.MaxValue", J([long.MaxValue, 2]), "overflows"), ("dimension beyond int64", "[18446744073709551616]", "shape"),
                ("huge but zero", J([1L << 62, 1L << 62, 0]), "needs"),
                ("fractional", "[1.5]", "shape"), ("exponent", "[1e3]", "shape"), ("null dimension", "[null]", "shape"), ("string", "\"4\"", "shape"),
                ("object", "{}", "shape"), ("no shape", "", "shape"), ("nested", "[[2]]", "shape"),
            })
                yield return C(name.Contains("overflow") || name.Contains("MaxValue") ? "overflowing shape" : name.Contains("negative") ? "negative shape" : "shape", name, Mut(x => x.Body(shape: sh)), expect);

            long b = e.Begin, en = e.End;
            foreach (var (name, off, expect) in new (string, string, string?)[]
            {
                ("end + 4", $"[{b},{en + 4}]", null), ("shifted by 4", $"[{b + 4},{en + 4}]", null), ("shifted back 4", b >= 4 ? $"[{b - 4},{en - 4}]" : $"[{b + 8},{en + 8}]", null),
                ("negative begin", $"[-1,{en}]", "data_offsets"), ("reversed", $"[{en},{b}]", en == b ? null : "data_offsets"),
                ("beyond the file", $"[{b},{en + (1L << 40)}]", "data_offsets"), ("huge both", $"[{1L << 62},{(1L << 62) + en - b}]", "outside"),
                ("int64 overflow", $"[{b},18446744073709551615]", "data_offsets"), ("three numbers", $"[{b},{en},0]", "data_offsets"),
                ("one number", $"[{b}]", "data_offsets"), ("fractional", $"[{b}.5,{en}]", "data_offsets"), ("strings", $"[\"{b}\",\"{en}\"]", "data_offsets"),
                ("null", "null", "data_offsets"), ("no data_offsets", "", "data_offsets"),
            })
                yield return C("offsets", name, Mut(x => x.Body(offsets: off)), expect);

            foreach (var body in new[] { "5", "[]", "\"x\"", "null", "true" })
                yield return C("entry", $"entry {body}", Mut(_ => body), "expected an object");
            yield return C("duplicate", "dtype given twice", Mut(x => x.Body(extra: $"\"dtype\":\"{x.DType}\"")), "duplicate");
            yield return C("duplicate", "shape given twice", Mut(x => x.Body(extra: $"\"shape\":[{string.Join(",", x.Shape)}]")), "duplicate");
            yield return C("duplicate", "name given twice", Header(entries.Select(x => (x.Name, x.Body())).Append((e.Name, e.Body()))), "duplicate");

            // Gaps: 4 unused bytes before this tensor.
            var gapData = data[..(int)b].Concat(new byte[4]).Concat(data[(int)b..]).ToArray();
            string gapHeader = Header((i, x) => x.Begin >= b ? $"{{\"dtype\":\"{x.DType}\",\"shape\":[{string.Join(",", x.Shape)}],\"data_offsets\":[{x.Begin + 4},{x.End + 4}]}}" : x.Body());
            yield return new("gap", $"{e.Name}: 4 unused bytes before it", Compose(gapHeader, gapData), "gap");
        }

        // 6. Overlaps: two tensors of the same byte size given the same offsets, for every such pair of neighbours.
        for (int k = 1; k < entries.Count; k++)
        {
            Entry a = entries[k - 1], c = entries[k];
            if (a.End - a.Begin != c.End - c.Begin) continue;
            yield return new("overlap", $"{c.Name} on top of {a.Name}", Compose(Header((i, x) => i == k ? x.Body(offsets: $"[{a.Begin},{a.End}]") : x.Body()), data), "overlap");
        }
        // Every tensor moved 4 bytes into its predecessor (where the tensor is at least 4 bytes long).
        for (int k = 1; k < entries.Count; k += 3)
        {
            var e = entries[k];
            if (e.Begin < 4 || e.End - e.Begin < 4) continue;
            yield return new("overlap", $"{e.Name} moved 4 bytes back", Compose(Header((i, x) => i == k ? x.Body(offsets: $"[{x.Begin - 4},{x.End - 4}]") : x.Body()), data), "overlap");
        }

        // 7. Metadata.
        foreach (var (name, meta) in new[] { ("a number", "1"), ("an array", "[\"a\"]"), ("a number value", "{\"a\":1}"), ("an object value", "{\"a\":{}}"), ("null value", "{\"a\":null}") })
            yield return new("metadata", $"__metadata__ {name}", Compose("{\"__metadata__\":" + meta + "," + Header(entries.Select(e => (e.Name, e.Body())), withMeta: false)[1..], data), "__metadata__");
        yield return new("duplicate", "__metadata__ twice", Compose("{\"__metadata__\":{},\"__metadata__\":{}," + Header(entries.Select(e => (e.Name, e.Body())), withMeta: false)[1..], data), "duplicate");
        yield return new("duplicate", "metadata key twice", Compose("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}," + Header(entries.Select(e => (e.Name, e.Body())), withMeta: false)[1..], data), "duplicate");
    }

    static int Size(string dtype) => MiniTransformer.IO.StDTypeInfo.TryParse(dtype, out var t) ? MiniTransformer.IO.StDTypeInfo.SizeOf(t) : 0;

    static bool IsJson(byte[] h)
    {
        try { using var d = JsonDocument.Parse(h); return true; }
        catch (JsonException) { return false; }
    }

    /// <summary>The tensor names, in header order.</summary>
    public IReadOnlyList<string> Names => [.. entries.Select(e => e.Name)];
}
