using System.Buffers.Binary;

namespace MiniTransformer.IO;

/// <summary>
/// llm.c token shards: a 256-int32 header — [0] magic 20240520, [1] version 1, [2] token count —
/// followed by the tokens as little-endian uint16.
/// </summary>
public static class TokenShard
{
    /// <summary>llm.c's token shard magic number.</summary>
    public const int Magic = 20240520;
    /// <summary>The supported shard version.</summary>
    public const int Version = 1;
    /// <summary>Size of the int32 header in bytes.</summary>
    public const int HeaderBytes = 256 * sizeof(int);

    /// <summary>Reads and validates a shard. Every problem is an <see cref="InputException"/> "&lt;path&gt;: ...".</summary>
    public static int[] Read(string path)
    {
        using var handle = BinaryFile.OpenRead(path);
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < HeaderBytes)
            throw new InputException($"{path}: file is {fileLength} bytes, shorter than the {HeaderBytes}-byte token shard header");

        var header = new byte[HeaderBytes];
        BinaryFile.ReadExactly(handle, header, 0, path);
        int magic = BinaryPrimitives.ReadInt32LittleEndian(header);
        int version = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4));
        int count = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8));
        if (magic != Magic)
            throw new InputException($"{path}: bad magic number {magic} (expected {Magic}); not an llm.c token shard");
        if (version != Version)
            throw new InputException($"{path}: unsupported token shard version {version} (expected {Version})");
        if (count < 0)
            throw new InputException($"{path}: negative token count {count}");
        long expected = HeaderBytes + 2L * count;
        if (fileLength != expected)
            throw new InputException(
                $"{path}: header says {count} tokens ({expected} bytes in all), but the file is {fileLength} bytes");

        var bytes = new byte[2L * count];
        BinaryFile.ReadExactly(handle, bytes, HeaderBytes, path);
        var tokens = new int[count];
        for (int i = 0; i < count; i++) tokens[i] = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(2 * i));
        return tokens;
    }

    /// <summary>
    /// Writes <paramref name="tokens"/> as a shard, atomically. Every token must be in [0, 65535];
    /// otherwise an <see cref="InputException"/> names the first offending token.
    /// </summary>
    public static void Write(string path, ReadOnlySpan<int> tokens)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var bytes = new byte[HeaderBytes + 2L * tokens.Length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), Version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), tokens.Length);
        for (int i = 0; i < tokens.Length; i++)
        {
            int t = tokens[i];
            if ((uint)t > ushort.MaxValue)
                throw new InputException($"{path}: token {t} at index {i} does not fit in uint16 (must be 0..65535)");
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(HeaderBytes + 2 * i), (ushort)t);
        }
        AtomicFile.Write(path, s => s.Write(bytes));
    }
}
