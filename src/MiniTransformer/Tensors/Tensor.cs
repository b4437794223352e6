using System.Numerics;
using System.Runtime.CompilerServices;

namespace MiniTransformer.Tensors;

/// <summary>Element types the engine computes in. F32/F64 on the CPU; BF16 is a CUDA storage type.</summary>
public enum DType { F32, F64, BF16 }

/// <summary>Which copies of a tensor's values are current (only meaningful once a device copy is attached).</summary>
public enum Residency
{
    /// <summary>The host array is current; the device copy is stale (or there is none).</summary>
    Host,
    /// <summary>The device copy is current; the host array is stale.</summary>
    Device,
    /// <summary>Both copies hold the same values.</summary>
    Both,
}

/// <summary>
/// A device-side copy of a tensor's values, owned by a backend (e.g. a CUDA allocation). <see cref="Tensors"/> knows only
/// this interface, so it does not depend on any device code. Copies are whole-tensor and synchronous with respect to the
/// host: <see cref="Download"/> returns with the host span filled; <see cref="Upload"/> returns when the host span may be
/// reused. <see cref="Zero"/> may be queued (device work is ordered on the backend's stream).
/// </summary>
public interface IDeviceStorage<T> : IDisposable where T : unmanaged
{
    /// <summary>host → device, the whole tensor.</summary>
    void Upload(ReadOnlySpan<T> host);
    /// <summary>device → host, the whole tensor (waits for the device work that writes it).</summary>
    void Download(Span<T> host);
    /// <summary>device ← 0.</summary>
    void Zero();
}

/// <summary>
/// A dense, contiguous, row-major tensor in host memory. Shapes are small int arrays; the last
/// dimension varies fastest. This is the only layout the engine uses.
/// <para>Device residency (CUDA): a backend may attach an <see cref="IDeviceStorage{T}"/> and keep the current values
/// there only. The host array is then brought up to date lazily: <see cref="Data"/> and <see cref="Span"/> download
/// first when only the device copy is current and, because a caller may write through the returned array, mark the
/// device copy stale (the next device op uploads it again); <see cref="HostView"/> is the read-only access that leaves
/// both copies current. An array taken from <see cref="Data"/> is valid until the next device op touches this tensor.
/// Without a device copy (the CPU path) each access costs one null check.</para>
/// </summary>
public sealed class Tensor<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    readonly T[] data;
    IDeviceStorage<T>? device;
    Residency residency;   // with device != null only

    public Tensor(params int[] shape) : this(new T[Numel(shape)], shape) { }

    public Tensor(T[] data, params int[] shape)
    {
        if (data.Length != Numel(shape))
            throw new ArgumentException($"data length {data.Length} does not match shape [{string.Join(", ", shape)}]");
        this.data = data;
        Shape = (int[])shape.Clone();
    }

    /// <summary>The host values, current (downloaded if needed); writable, so any device copy becomes stale.</summary>
    public T[] Data
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if (device is not null) HostWrite();
            return data;
        }
    }

    public int[] Shape { get; }
    public int Length => data.Length;
    public int Rank => Shape.Length;
    public Span<T> Span => Data;

    /// <summary>The host values for reading only: downloaded if needed, and the device copy stays current.</summary>
    public ReadOnlySpan<T> HostView
    {
        get
        {
            if (device is not null) HostRead();
            return data;
        }
    }

    public int Dim(int i) => Shape[i < 0 ? Shape.Length + i : i];

    /// <summary>Sets every element to zero: on the device when a device copy is attached (no host traffic).</summary>
    public void Clear()
    {
        if (device is null) Array.Clear(data);
        else { device.Zero(); residency = Residency.Device; }
    }

    public Tensor<T> Clone() => new(HostView.ToArray(), Shape);

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

    // ------------------------------------------------------------------ residency (for backends)

    [MethodImpl(MethodImplOptions.NoInlining)]
    void HostWrite()
    {
        if (residency == Residency.Device) device!.Download(data);
        residency = Residency.Host;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    void HostRead()
    {
        if (residency == Residency.Device) { device!.Download(data); residency = Residency.Both; }
    }

    /// <summary>The attached device copy, or null (the CPU path).</summary>
    public IDeviceStorage<T>? DeviceStorage => device;

    /// <summary>Which copy is current: <see cref="Residency.Host"/> whenever no device copy is attached.</summary>
    public Residency Residency => device is null ? Residency.Host : residency;

    /// <summary>
    /// Attaches a device copy (its contents are not yet the tensor's: the host array stays the truth until a device op
    /// writes). A tensor has at most one; <see cref="DetachDevice"/> first to move it to another.
    /// </summary>
    public void AttachDevice(IDeviceStorage<T> storage)
    {
        if (device is not null) throw new InvalidOperationException($"{this} already has a device copy; detach it first");
        device = storage;
        residency = Residency.Host;
    }

    /// <summary>Brings the host array up to date and removes the device copy, returning it (the caller disposes it).</summary>
    public IDeviceStorage<T>? DetachDevice()
    {
        if (device is null) return null;
        HostRead();
        var d = device;
        device = null;
        return d;
    }

    /// <summary>The device copy for a device op that reads this tensor: uploaded first if the host array is newer.</summary>
    public IDeviceStorage<T> DeviceRead()
    {
        var d = device ?? throw new InvalidOperationException($"{this} has no device copy");
        if (residency == Residency.Host) { d.Upload(data); residency = Residency.Both; }
        return d;
    }

    /// <summary>
    /// Marks the device copy as the only current one, after (or while queuing) a device op that wrote it: every element
    /// when <see cref="DeviceRead"/> was not called first, or an update of the values it read.
    /// </summary>
    public void MarkDeviceWritten()
    {
        if (device is null) throw new InvalidOperationException($"{this} has no device copy");
        residency = Residency.Device;
    }
}
