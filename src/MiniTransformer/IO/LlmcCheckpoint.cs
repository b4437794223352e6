using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace MiniTransformer.IO;

/// <summary>
/// A GPT-2 checkpoint in llm.c's float32 format (<c>gpt2_124M.bin</c>, version 3), converted to the
/// Hugging Face GPT-2 names and layouts (Conv1D weights [in, out], the unpadded vocabulary).
/// </summary>
/// <remarks>
/// File layout (llm.c train_gpt2.c): 256 int32 header — [0] magic 20240326, [1] version 3,
/// [2] max_seq_len, [3] vocab_size, [4] num_layers, [5] num_heads, [6] channels, [7] padded_vocab_size —
/// then float32 parameters: wte [Vp, C], wpe [maxT, C], ln1w [L, C], ln1b [L, C], qkvw [L, 3C, C],
/// qkvb [L, 3C], attprojw [L, C, C], attprojb [L, C], ln2w [L, C], ln2b [L, C], fcw [L, 4C, C],
/// fcb [L, 4C], fcprojw [L, C, 4C], fcprojb [L, C], lnfw [C], lnfb [C]. Matrices are stored [out, in].
/// </remarks>
public sealed record LlmcCheckpoint(
    int MaxSeqLen, int VocabSize, int PaddedVocabSize, int NumLayers, int NumHeads, int Channels,
    IReadOnlyList<StTensor> Tensors)
{
    /// <summary>llm.c's model file magic number.</summary>
    public const int Magic = 20240326;
    /// <summary>The float32 checkpoint version (llm.c's bf16 checkpoints are version 5, not supported).</summary>
    public const int Version = 3;
    /// <summary>Size of the int32 header in bytes.</summary>
    public const int HeaderBytes = 256 * sizeof(int);

    /// <summary>Reads and validates an llm.c GPT-2 checkpoint. Every problem is an <see cref="InputException"/> "&lt;path&gt;: ...".</summary>
    public static LlmcCheckpoint Read(string path)
    {
        using var handle = BinaryFile.OpenRead(path);
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < HeaderBytes)
            throw new InputException($"{path}: file is {fileLength} bytes, shorter than the {HeaderBytes}-byte llm.c header");

        var header = new byte[HeaderBytes];
        BinaryFile.ReadExactly(handle, header, 0, path);
        int H(int i) => BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4 * i));

        int magic = H(0), version = H(1);
        if (magic != Magic)
            throw new InputException($"{path}: bad magic number {magic} (expected {Magic}); not an llm.c GPT-2 checkpoint");
        if (version != Version)
            throw new InputException(
                $"{path}: unsupported llm.c checkpoint version {version} (only version {Version}, float32, is supported"
                + (version == 5 ? "; version 5 is bfloat16" : "") + ")");

        int maxT = H(2), V = H(3), L = H(4), NH = H(5), C = H(6), Vp = H(7);
        void Positive(int value, string what)
        {
            if (value <= 0) throw new InputException($"{path}: {what} is {value}; it must be positive");
        }
        Positive(maxT, "max_seq_len");
        Positive(V, "vocab_size");
        Positive(L, "num_layers");
        Positive(NH, "num_heads");
        Positive(C, "channels");
        Positive(Vp, "padded_vocab_size");
        if (C % NH != 0)
            throw new InputException($"{path}: channels {C} is not divisible by num_heads {NH}");
        if (Vp < V)
            throw new InputException($"{path}: padded_vocab_size {Vp} is smaller than vocab_size {V}");

        // Parameter sizes (in floats), in file order. All arithmetic is checked: the header is untrusted.
        long c = C, l = L;
        long[] sizes;
        long total;
        try
        {
            sizes =
            [
                checked(Vp * c),            // 0 wte
                checked(maxT * c),          // 1 wpe
                checked(l * c),             // 2 ln1w
                checked(l * c),             // 3 ln1b
                checked(l * 3 * c * c),     // 4 qkvw
                checked(l * 3 * c),         // 5 qkvb
                checked(l * c * c),         // 6 attprojw
                checked(l * c),             // 7 attprojb
                checked(l * c),             // 8 ln2w
                checked(l * c),             // 9 ln2b
                checked(l * 4 * c * c),     // 10 fcw
                checked(l * 4 * c),         // 11 fcb
                checked(l * c * 4 * c),     // 12 fcprojw
                checked(l * c),             // 13 fcprojb
                c,                          // 14 lnfw
                c,                          // 15 lnfb
            ];
            total = 0;
            foreach (long s in sizes) total = checked(total + s);
            _ = checked(HeaderBytes + total * 4);
        }
        catch (OverflowException)
        {
            throw new InputException($"{path}: parameter count overflows (channels {C}, num_layers {L}, padded_vocab_size {Vp})");
        }
        long expectedLength = HeaderBytes + total * 4;
        if (fileLength != expectedLength)
            throw new InputException(
                $"{path}: file is {fileLength} bytes, but the header (maxT={maxT}, V={V}, Vp={Vp}, L={L}, H={NH}, C={C}) "
                + $"implies {total} float32 parameters = {expectedLength} bytes");

        // Largest single tensor we materialize: wte [V, C], wpe [maxT, C], or a per-layer 4C×C matrix.
        long largest = Math.Max(Math.Max(V * c, maxT * c), 4 * c * c);
        if (largest > Array.MaxLength / 4)
            throw new InputException($"{path}: a tensor of {largest} floats is larger than this reader supports");

        var offsets = new long[sizes.Length]; // byte offsets of each parameter block
        long pos = HeaderBytes;
        for (int i = 0; i < sizes.Length; i++) { offsets[i] = pos; pos += sizes[i] * 4; }

        float[] ReadFloats(long byteOffset, long count)
        {
            var bytes = new byte[count * 4];
            BinaryFile.ReadExactly(handle, bytes, byteOffset, path);
            var f = new float[count];
            if (BitConverter.IsLittleEndian) MemoryMarshal.Cast<byte, float>(bytes).CopyTo(f);
            else for (int i = 0; i < f.Length; i++) f[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i));
            return f;
        }

        // Raw per-layer slice of block p, shaped as the llm.c tensor would be; returned as-is.
        StTensor Plain(string name, int p, int layer, long perLayer, params long[] shape) =>
            StTensor.FromFloats(name, ReadFloats(offsets[p] + layer * perLayer * 4, perLayer), shape);

        // Per-layer [out, in] matrix of block p, transposed to [in, out].
        StTensor Transposed(string name, int p, int layer, long outDim, long inDim)
        {
            long n = outDim * inDim;
            var src = ReadFloats(offsets[p] + layer * n * 4, n);
            var dst = new float[n];
            int o = (int)outDim, iN = (int)inDim;
            for (int r = 0; r < o; r++)
            {
                var row = src.AsSpan(r * iN, iN);
                for (int k = 0; k < iN; k++) dst[k * o + r] = row[k];
            }
            return StTensor.FromFloats(name, dst, inDim, outDim);
        }

        var tensors = new List<StTensor>(2 + 12 * L + 2)
        {
            StTensor.FromFloats("wte.weight", ReadFloats(offsets[0], V * c), V, c),
            StTensor.FromFloats("wpe.weight", ReadFloats(offsets[1], maxT * c), maxT, c),
        };
        for (int i = 0; i < L; i++)
        {
            string h = $"h.{i}.";
            tensors.Add(Plain(h + "ln_1.weight", 2, i, c, c));
            tensors.Add(Plain(h + "ln_1.bias", 3, i, c, c));
            tensors.Add(Transposed(h + "attn.c_attn.weight", 4, i, 3 * c, c));
            tensors.Add(Plain(h + "attn.c_attn.bias", 5, i, 3 * c, 3 * c));
            tensors.Add(Transposed(h + "attn.c_proj.weight", 6, i, c, c));
            tensors.Add(Plain(h + "attn.c_proj.bias", 7, i, c, c));
            tensors.Add(Plain(h + "ln_2.weight", 8, i, c, c));
            tensors.Add(Plain(h + "ln_2.bias", 9, i, c, c));
            tensors.Add(Transposed(h + "mlp.c_fc.weight", 10, i, 4 * c, c));
            tensors.Add(Plain(h + "mlp.c_fc.bias", 11, i, 4 * c, 4 * c));
            tensors.Add(Transposed(h + "mlp.c_proj.weight", 12, i, c, 4 * c));
            tensors.Add(Plain(h + "mlp.c_proj.bias", 13, i, c, c));
        }
        tensors.Add(Plain("ln_f.weight", 14, 0, c, c));
        tensors.Add(Plain("ln_f.bias", 15, 0, c, c));

        return new LlmcCheckpoint(maxT, V, Vp, L, NH, C, tensors.AsReadOnly());
    }
}
