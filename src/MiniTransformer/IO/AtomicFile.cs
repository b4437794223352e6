using System.Security.Cryptography;

namespace MiniTransformer.IO;

/// <summary>
/// Writes a file atomically: the content goes to <c>path + ".tmp-&lt;random&gt;"</c> in the same
/// folder, is flushed to disk, and then replaces <paramref name="path"/> in one rename.
/// On any failure the temporary file is deleted and the destination is left as it was.
/// </summary>
internal static class AtomicFile
{
    public static void Write(string path, Action<Stream> writeBody)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(writeBody);

        string full = System.IO.Path.GetFullPath(path);
        string? dir = System.IO.Path.GetDirectoryName(full);
        if (dir is not null && !Directory.Exists(dir))
            throw new InputException($"{path}: directory '{dir}' does not exist");

        string tmp = path + ".tmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                writeBody(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    private static void TryDelete(string tmp)
    {
        try
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}

/// <summary>Small helpers for reading binary files with explicit, checked lengths.</summary>
internal static class BinaryFile
{
    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes at <paramref name="offset"/> or throws.</summary>
    public static void ReadExactly(Microsoft.Win32.SafeHandles.SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        while (buffer.Length > 0)
        {
            int n = RandomAccess.Read(handle, buffer, offset);
            if (n <= 0)
                throw new InputException($"{path}: unexpected end of file at byte {offset}");
            buffer = buffer[n..];
            offset += n;
        }
    }

    /// <summary>Opens <paramref name="path"/> for reading, turning "not there" into an <see cref="InputException"/>.</summary>
    public static Microsoft.Win32.SafeHandles.SafeFileHandle OpenRead(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
            throw new InputException($"{path}: is a directory, not a file");
        if (!File.Exists(path))
            throw new InputException($"{path}: file not found");
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
        }
        catch (FileNotFoundException)
        {
            throw new InputException($"{path}: file not found");
        }
        catch (UnauthorizedAccessException)
        {
            throw new InputException($"{path}: permission denied");
        }
    }
}
