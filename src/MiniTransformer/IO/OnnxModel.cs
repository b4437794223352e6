using System.Buffers.Binary;
using System.Text;

namespace MiniTransformer.IO;

/// <summary>
/// The part of an ONNX model that importing a network needs: the graph's nodes (op type, inputs, outputs, attributes),
/// its initializers (tensors with their data), and its inputs and outputs, read by a small reader of the protobuf wire
/// format (field numbers from onnx.proto3). Unknown fields are skipped, so newer files read as long as the fields used
/// here keep their numbers (protobuf guarantees that). External data (tensors in side files) is not supported.
/// </summary>
public sealed class OnnxModel
{
    public long IrVersion { get; private set; }
    public string ProducerName { get; private set; } = "";
    public string ProducerVersion { get; private set; } = "";
    public List<(string Domain, long Version)> Opsets { get; } = [];
    public string GraphName { get; private set; } = "";
    public List<OnnxNode> Nodes { get; } = [];
    public Dictionary<string, OnnxTensor> Initializers { get; } = new(StringComparer.Ordinal);
    public List<OnnxValueInfo> Inputs { get; } = [];
    public List<OnnxValueInfo> Outputs { get; } = [];
    public string Source { get; private set; } = "";

    public static OnnxModel Read(string path)
    {
        if (!File.Exists(path)) throw new InputException($"{path}: no such ONNX file");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InputException($"{path}: cannot read: {e.Message}"); }
        return Parse(bytes, path);
    }

    public static OnnxModel Parse(byte[] bytes, string source)
    {
        var m = new OnnxModel { Source = source };
        try
        {
            var r = new ProtoReader(bytes, 0, bytes.Length);
            bool graph = false;
            while (r.Next(out int field, out int wire))
            {
                switch (field)
                {
                    case 1 when wire == 0: m.IrVersion = (long)r.Varint(); break;
                    case 2 when wire == 2: m.ProducerName = r.String(); break;
                    case 3 when wire == 2: m.ProducerVersion = r.String(); break;
                    case 7 when wire == 2: m.ReadGraph(r.Sub()); graph = true; break;
                    case 8 when wire == 2:
                        {
                            var o = r.Sub(); string dom = ""; long ver = 0;
                            while (o.Next(out int f, out int w))
                                if (f == 1 && w == 2) dom = o.String(); else if (f == 2 && w == 0) ver = (long)o.Varint(); else o.Skip(w);
                            m.Opsets.Add((dom, ver));
                            break;
                        }
                    default: r.Skip(wire); break;
                }
            }
            if (!graph) throw new InputException($"{source}: not an ONNX model (no graph)");
        }
        catch (ProtoException e) { throw new InputException($"{source}: not a valid ONNX file ({e.Message})"); }
        return m;
    }

    void ReadGraph(ProtoReader r)
    {
        while (r.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2: Nodes.Add(OnnxNode.Read(r.Sub())); break;
                case 2 when wire == 2: GraphName = r.String(); break;
                case 5 when wire == 2:
                    {
                        var t = OnnxTensor.Read(r.Sub());
                        if (!Initializers.TryAdd(t.Name, t)) throw new ProtoException($"initializer '{t.Name}' appears twice");
                        break;
                    }
                case 11 when wire == 2: Inputs.Add(OnnxValueInfo.Read(r.Sub())); break;
                case 12 when wire == 2: Outputs.Add(OnnxValueInfo.Read(r.Sub())); break;
                default: r.Skip(wire); break;
            }
        }
    }
}

public sealed record OnnxValueInfo(string Name, int ElemType, long[] Dims, string[] DimParams)
{
    internal static OnnxValueInfo Read(ProtoReader r)
    {
        string name = ""; int elem = 0; var dims = new List<long>(); var pars = new List<string>();
        while (r.Next(out int f, out int w))
        {
            if (f == 1 && w == 2) name = r.String();
            else if (f == 2 && w == 2)
            {
                var type = r.Sub();
                while (type.Next(out int tf, out int tw))
                {
                    if (tf != 1 || tw != 2) { type.Skip(tw); continue; }   // tensor_type
                    var tt = type.Sub();
                    while (tt.Next(out int ef, out int ew))
                    {
                        if (ef == 1 && ew == 0) elem = (int)tt.Varint();
                        else if (ef == 2 && ew == 2)
                        {
                            var shape = tt.Sub();
                            while (shape.Next(out int sf, out int sw))
                            {
                                if (sf != 1 || sw != 2) { shape.Skip(sw); continue; }
                                var dim = shape.Sub(); long v = -1; string p = "";
                                while (dim.Next(out int df, out int dw))
                                    if (df == 1 && dw == 0) v = (long)dim.Varint(); else if (df == 2 && dw == 2) p = dim.String(); else dim.Skip(dw);
                                dims.Add(v); pars.Add(p);
                            }
                        }
                        else tt.Skip(ew);
                    }
                }
            }
            else r.Skip(w);
        }
        return new(name, elem, [.. dims], [.. pars]);
    }
}

/// <summary>An ONNX node: op type, named inputs and outputs ("" for an omitted optional input), attributes.</summary>
public sealed class OnnxNode
{
    public string Name { get; private set; } = "";
    public string OpType { get; private set; } = "";
    public string Domain { get; private set; } = "";
    public List<string> Inputs { get; } = [];
    public List<string> Outputs { get; } = [];
    public Dictionary<string, OnnxAttribute> Attributes { get; } = new(StringComparer.Ordinal);

    public long? Int(string name) => Attributes.TryGetValue(name, out var a) ? a.I : null;
    public float? Float(string name) => Attributes.TryGetValue(name, out var a) ? a.F : null;
    public override string ToString() => $"{OpType} '{Name}' ({string.Join(", ", Inputs)}) -> ({string.Join(", ", Outputs)})";

    internal static OnnxNode Read(ProtoReader r)
    {
        var n = new OnnxNode();
        while (r.Next(out int f, out int w))
        {
            switch (f)
            {
                case 1 when w == 2: n.Inputs.Add(r.String()); break;
                case 2 when w == 2: n.Outputs.Add(r.String()); break;
                case 3 when w == 2: n.Name = r.String(); break;
                case 4 when w == 2: n.OpType = r.String(); break;
                case 7 when w == 2: n.Domain = r.String(); break;
                case 5 when w == 2: { var a = OnnxAttribute.Read(r.Sub()); n.Attributes[a.Name] = a; break; }
                default: r.Skip(w); break;
            }
        }
        return n;
    }
}

/// <summary>An attribute: the scalar forms (f, i, s), a tensor (t) and the repeated ints and floats.</summary>
public sealed class OnnxAttribute
{
    public string Name { get; private set; } = "";
    public float F { get; private set; }
    public long I { get; private set; }
    public string S { get; private set; } = "";
    public OnnxTensor? T { get; private set; }
    public List<long> Ints { get; } = [];
    public List<float> Floats { get; } = [];

    internal static OnnxAttribute Read(ProtoReader r)
    {
        var a = new OnnxAttribute();
        while (r.Next(out int f, out int w))
        {
            switch (f)
            {
                case 1 when w == 2: a.Name = r.String(); break;
                case 2 when w == 5: a.F = r.Fixed32Float(); break;
                case 3 when w == 0: a.I = (long)r.Varint(); break;
                case 4 when w == 2: a.S = r.String(); break;
                case 5 when w == 2: a.T = OnnxTensor.Read(r.Sub()); break;
                case 7 when w == 2: { var s = r.Sub(); while (!s.End) a.Floats.Add(s.Fixed32Float()); break; }
                case 7 when w == 5: a.Floats.Add(r.Fixed32Float()); break;
                case 8 when w == 2: { var s = r.Sub(); while (!s.End) a.Ints.Add((long)s.Varint()); break; }
                case 8 when w == 0: a.Ints.Add((long)r.Varint()); break;
                default: r.Skip(w); break;
            }
        }
        return a;
    }
}

/// <summary>An ONNX tensor (initializer or constant): dims, element type, and its values as doubles or int64s.</summary>
public sealed class OnnxTensor
{
    public const int Float = 1, Uint8 = 2, Int8 = 3, Int32 = 6, Int64 = 7, Bool = 9, Float16 = 10, Double = 11;

    public string Name { get; private set; } = "";
    public long[] Dims { get; private set; } = [];
    public int DataType { get; private set; }
    byte[]? raw;
    readonly List<float> floatData = [];
    readonly List<double> doubleData = [];
    readonly List<long> intData = [];   // int32_data and int64_data
    public bool External { get; private set; }

    public long Count => Dims.Aggregate(1L, (a, b) => a * b);

    internal static OnnxTensor Read(ProtoReader r)
    {
        var t = new OnnxTensor();
        var dims = new List<long>();
        while (r.Next(out int f, out int w))
        {
            switch (f)
            {
                case 1 when w == 2: { var s = r.Sub(); while (!s.End) dims.Add((long)s.Varint()); break; }
                case 1 when w == 0: dims.Add((long)r.Varint()); break;
                case 2 when w == 0: t.DataType = (int)r.Varint(); break;
                case 8 when w == 2: t.Name = r.String(); break;
                case 9 when w == 2: t.raw = r.Bytes().ToArray(); break;
                case 4 when w == 2: { var s = r.Sub(); while (!s.End) t.floatData.Add(s.Fixed32Float()); break; }
                case 4 when w == 5: t.floatData.Add(r.Fixed32Float()); break;
                case 10 when w == 2: { var s = r.Sub(); while (!s.End) t.doubleData.Add(BitConverter.Int64BitsToDouble((long)s.Fixed64())); break; }
                case 5 or 7 when w == 2: { var s = r.Sub(); while (!s.End) t.intData.Add((long)s.Varint()); break; }
                case 5 or 7 when w == 0: t.intData.Add((long)r.Varint()); break;
                case 13 when w == 2: t.External = true; r.Skip(w); break;
                case 14 when w == 0: if (r.Varint() == 1) t.External = true; break;
                default: r.Skip(w); break;
            }
        }
        t.Dims = [.. dims];
        return t;
    }

    void NeedData(string source)
    {
        if (External) throw new InputException($"{source}: tensor '{Name}' keeps its data in an external file, which is not supported");
    }

    /// <summary>The values as doubles (float, double, float16 and the integer types).</summary>
    public double[] ToDoubles(string source)
    {
        NeedData(source);
        long n = Count;
        var d = new double[n];
        if (raw is not null)
        {
            int size = DataType switch { Float or Int32 => 4, Double or Int64 => 8, Float16 => 2, Uint8 or Int8 or Bool => 1, _ => 0 };
            if (size == 0) throw new InputException($"{source}: tensor '{Name}' has ONNX data type {DataType}, which cannot be read as numbers");
            if (raw.Length != n * size) throw new InputException($"{source}: tensor '{Name}' has {raw.Length} bytes of data, expected {n}·{size} for dims [{string.Join(", ", Dims)}]");
            var s = raw.AsSpan();
            for (long i = 0; i < n; i++)
            {
                int o = (int)(i * size);
                d[i] = DataType switch
                {
                    Float => BinaryPrimitives.ReadSingleLittleEndian(s[o..]),
                    Double => BinaryPrimitives.ReadDoubleLittleEndian(s[o..]),
                    Int32 => BinaryPrimitives.ReadInt32LittleEndian(s[o..]),
                    Int64 => BinaryPrimitives.ReadInt64LittleEndian(s[o..]),
                    Float16 => (double)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(s[o..])),
                    Int8 => (sbyte)s[o],
                    _ => s[o],
                };
            }
            return d;
        }
        IEnumerable<double> src = DataType switch
        {
            Float => floatData.Select(x => (double)x),
            Double => doubleData,
            Float16 => intData.Select(x => (double)BitConverter.UInt16BitsToHalf((ushort)x)),
            _ => intData.Select(x => (double)x),
        };
        var list = src.ToArray();
        if (list.Length != n) throw new InputException($"{source}: tensor '{Name}' has {list.Length} values, expected {n} for dims [{string.Join(", ", Dims)}]");
        return list;
    }

    /// <summary>Integer values (int64, int32, and the integral floats of a float tensor).</summary>
    public long[] ToInt64s(string source)
    {
        if (raw is null && DataType is Int64 or Int32) { NeedData(source); return [.. intData]; }
        return [.. ToDoubles(source).Select(x => (long)x)];
    }
}

internal sealed class ProtoException(string message) : Exception(message);

/// <summary>A protobuf wire-format reader over a slice of a byte array.</summary>
internal struct ProtoReader(byte[] data, int start, int end)
{
    int pos = start;
    public readonly bool End => pos >= end;

    public bool Next(out int field, out int wire)
    {
        if (pos >= end) { field = wire = 0; return false; }
        ulong key = Varint();
        field = (int)(key >> 3);
        wire = (int)(key & 7);
        if (field == 0) throw new ProtoException($"field number 0 at byte {pos}");
        return true;
    }

    public ulong Varint()
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (pos >= end) throw new ProtoException("truncated varint");
            byte b = data[pos++];
            v |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return v;
        }
        throw new ProtoException($"varint longer than 10 bytes at byte {pos}");
    }

    public float Fixed32Float()
    {
        if (end - pos < 4) throw new ProtoException("truncated fixed32");
        float f = BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(pos));
        pos += 4;
        return f;
    }

    public ulong Fixed64()
    {
        if (end - pos < 8) throw new ProtoException("truncated fixed64");
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(pos));
        pos += 8;
        return v;
    }

    public ReadOnlySpan<byte> Bytes()
    {
        ulong len = Varint();
        if (len > (ulong)(end - pos)) throw new ProtoException($"length {len} runs past the end at byte {pos}");
        var s = data.AsSpan(pos, (int)len);
        pos += (int)len;
        return s;
    }

    public string String() => Encoding.UTF8.GetString(Bytes());

    public ProtoReader Sub()
    {
        ulong len = Varint();
        if (len > (ulong)(end - pos)) throw new ProtoException($"length {len} runs past the end at byte {pos}");
        var r = new ProtoReader(data, pos, pos + (int)len);
        pos += (int)len;
        return r;
    }

    public void Skip(int wire)
    {
        switch (wire)
        {
            case 0: Varint(); break;
            case 1: if (end - pos < 8) throw new ProtoException("truncated fixed64"); pos += 8; break;
            case 2: Bytes(); break;
            case 5: if (end - pos < 4) throw new ProtoException("truncated fixed32"); pos += 4; break;
            default: throw new ProtoException($"unsupported wire type {wire} at byte {pos}");
        }
    }
}
