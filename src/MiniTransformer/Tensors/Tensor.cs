using System.Numerics;

namespace MiniTransformer.Tensors;

/// <summary>Element types the engine computes in. F32/F64 on the CPU; BF16 is a CUDA storage type.</summary>
public enum DType { F32, F64, BF16 }

/// <summary>
/// A dense, contiguous, row-major tensor in host memory. Shapes are small int arrays; the last
/// dimension varies fastest. This is the only layout the engine uses.
/// </summary>
public sealed class Tensor<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public Tensor(params int[] shape) : this(new T[Numel(shape)], shape) { }

    public Tensor(T[] data, params int[] shape)
    {
        if (data.Length != Numel(shape))
            throw new ArgumentException($"data length {data.Length} does not match shape [{string.Join(", ", shape)}]");
        Data = data;
        Shape = (int[])shape.Clone();
    }

    public T[] Data { get; }
    public int[] Shape { get; }
    public int Length => Data.Length;
    public int Rank => Shape.Length;
    public Span<T> Span => Data;

    public int Dim(int i) => Shape[i < 0 ? Shape.Length + i : i];

    public void Clear() => Array.Clear(Data);

    public Tensor<T> Clone() => new((T[])Data.Clone(), Shape);

    public override string ToString() => $"Tensor<{typeof(T).Name}>[{string.Join(", ", Shape)}]";

    public static int Numel(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException("negative dimension");
            n *= d;
            if (n > Array.MaxLength) throw new ArgumentException($"tensor too large ({n} elements)");
        }
        return (int)n;
    }
}
