using MiniTransformer.Tensors;

namespace MiniTransformer.Tests.Cuda;

/// <summary>
/// The device-residency state machine of <see cref="Tensor{T}"/> (what the CUDA backend relies on), driven by an
/// in-memory fake "device" that counts its copies: runs on any machine.
/// </summary>
public class ResidencyTests
{
    /// <summary>A device copy held in an ordinary array; counts uploads, downloads and zeroings.</summary>
    sealed class FakeStorage(int n) : IDeviceStorage<float>
    {
        public float[] Mem { get; } = new float[n];
        public int Uploads, Downloads, Zeroes;
        public bool Disposed;
        public void Upload(ReadOnlySpan<float> host) { host.CopyTo(Mem); Uploads++; }
        public void Download(Span<float> host) { Mem.CopyTo(host); Downloads++; }
        public void Zero() { Array.Clear(Mem); Zeroes++; }
        public void Dispose() => Disposed = true;
    }

    /// <summary>What a device op does: read (upload if stale), compute on the device copy, mark it written.</summary>
    static void DeviceScale(Tensor<float> t, float s)
    {
        var d = (FakeStorage)t.DeviceRead();
        for (int i = 0; i < d.Mem.Length; i++) d.Mem[i] *= s;
        t.MarkDeviceWritten();
    }

    static (Tensor<float>, FakeStorage) Attached(params float[] values)
    {
        var t = new Tensor<float>((float[])values.Clone(), values.Length);
        var s = new FakeStorage(values.Length);
        t.AttachDevice(s);
        return (t, s);
    }

    [Fact]
    public void WithoutADeviceCopyTheTensorIsHostOnly()
    {
        var t = new Tensor<float>([1, 2, 3], 3);
        Assert.Null(t.DeviceStorage);
        Assert.Equal(Residency.Host, t.Residency);
        t.Data[0] = 5;
        t.Clear();
        Assert.Equal(new float[3], t.Data);
        Assert.Throws<InvalidOperationException>(() => t.DeviceRead());
        Assert.Throws<InvalidOperationException>(() => t.MarkDeviceWritten());
        Assert.Null(t.DetachDevice());
    }

    [Fact]
    public void FirstDeviceReadUploadsOnceThenTheCopiesAgree()
    {
        var (t, s) = Attached(1, 2, 3);
        Assert.Equal(Residency.Host, t.Residency);
        Assert.Equal(0, s.Uploads);
        t.DeviceRead();
        Assert.Equal(1, s.Uploads);
        Assert.Equal(Residency.Both, t.Residency);
        Assert.Equal([1f, 2, 3], s.Mem);
        t.DeviceRead();                      // both current: no second upload
        Assert.Equal(1, s.Uploads);
        Assert.Equal(0, s.Downloads);
    }

    [Fact]
    public void HostReadAfterDeviceWriteDownloadsOnce()
    {
        var (t, s) = Attached(1, 2, 3);
        DeviceScale(t, 2);
        Assert.Equal(Residency.Device, t.Residency);
        Assert.Equal(0, s.Downloads);
        Assert.Equal([2f, 4, 6], t.HostView.ToArray());
        Assert.Equal(1, s.Downloads);
        Assert.Equal(Residency.Both, t.Residency);
        Assert.Equal([2f, 4, 6], t.HostView.ToArray());
        Assert.Equal(1, s.Downloads);        // read-only access keeps both current
        t.DeviceRead();
        Assert.Equal(1, s.Uploads);          // the first DeviceScale's upload only
    }

    [Fact]
    public void DataMarksTheDeviceCopyStaleSoTheNextDeviceOpUploadsHostWrites()
    {
        var (t, s) = Attached(1, 2, 3);
        DeviceScale(t, 10);                  // device: 10 20 30, host stale
        var d = t.Data;                      // downloads, then the host owns the values
        Assert.Equal([10f, 20, 30], d);
        Assert.Equal(Residency.Host, t.Residency);
        d[1] = -1;                           // a host write through the array
        DeviceScale(t, 2);                   // must see the write: uploads first
        Assert.Equal(2, s.Uploads);
        Assert.Equal([20f, -2, 60], t.HostView.ToArray());
        Assert.Equal(2, s.Downloads);
    }

    [Fact]
    public void SpanIsAHostWriteToo()
    {
        var (t, s) = Attached(1, 2);
        DeviceScale(t, 3);
        t.Span[0] = 7;
        Assert.Equal(Residency.Host, t.Residency);
        DeviceScale(t, 1);
        Assert.Equal([7f, 6], s.Mem);
    }

    [Fact]
    public void ClearOnADeviceTensorZeroesTheDeviceCopyWithoutHostTraffic()
    {
        var (t, s) = Attached(1, 2, 3);
        t.DeviceRead();
        t.Clear();
        Assert.Equal(1, s.Zeroes);
        Assert.Equal(Residency.Device, t.Residency);
        Assert.Equal([1f, 2, 3], (float[])typeof(Tensor<float>).GetField("data",
            System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(t)!);   // host untouched, stale
        Assert.Equal(0, s.Downloads);
        Assert.Equal([0f, 0, 0], t.HostView.ToArray());
        Assert.Equal(1, s.Downloads);
    }

    [Fact]
    public void ClearBeforeAnyUploadStillZeroes()
    {
        var (t, s) = Attached(4, 5);
        t.Clear();                           // host current, device never written: the zeroed device copy becomes the truth
        DeviceScale(t, 2);
        Assert.Equal(0, s.Uploads);          // no upload of the stale 4, 5
        Assert.Equal([0f, 0], t.HostView.ToArray());
    }

    [Fact]
    public void AnOverwritingDeviceOpNeedsNoUpload()
    {
        var (t, s) = Attached(1, 2, 3);
        t.Data[0] = 9;                       // host newer
        // a forward output: written entirely on the device, never read there
        s.Mem[0] = 4; s.Mem[1] = 5; s.Mem[2] = 6;
        t.MarkDeviceWritten();
        Assert.Equal(0, s.Uploads);
        Assert.Equal([4f, 5, 6], t.Data);
    }

    [Fact]
    public void DetachBringsTheValuesHomeAndHandsBackTheStorage()
    {
        var (t, s) = Attached(1, 2);
        DeviceScale(t, 5);
        var back = t.DetachDevice();
        Assert.Same(s, back);
        Assert.Null(t.DeviceStorage);
        Assert.Equal(Residency.Host, t.Residency);
        Assert.Equal([5f, 10], t.Data);
        Assert.Equal(1, s.Downloads);
        var s2 = new FakeStorage(2);
        t.AttachDevice(s2);                  // another device: uploads the host values on first read
        DeviceScale(t, 1);
        Assert.Equal([5f, 10], s2.Mem);
    }

    [Fact]
    public void ASecondAttachIsRefused()
    {
        var (t, _) = Attached(1);
        Assert.Throws<InvalidOperationException>(() => t.AttachDevice(new FakeStorage(1)));
    }

    [Fact]
    public void CloneTakesTheCurrentValuesAndLeavesTheDeviceCopyCurrent()
    {
        var (t, s) = Attached(1, 2);
        DeviceScale(t, 3);
        var c = t.Clone();
        Assert.Null(c.DeviceStorage);
        Assert.Equal([3f, 6], c.Data);
        Assert.Equal(Residency.Both, t.Residency);
        c.Data[0] = 100;                     // the clone is independent
        Assert.Equal(3f, t.HostView[0]);
        Assert.Equal(1, s.Uploads);
    }

    [Fact]
    public void LengthAndShapeNeverTouchTheDevice()
    {
        var (t, s) = Attached(1, 2, 3, 4);
        DeviceScale(t, 2);
        Assert.Equal(4, t.Length);
        Assert.Equal([4], t.Shape);
        Assert.Equal(0, s.Downloads);
        Assert.Equal(Residency.Device, t.Residency);
    }
}
