using System.Runtime.InteropServices;

namespace ActorCache.Volumes;

/// <summary>
/// Read and write requests a volume was asked for, and their bytes, counted where every front enters the
/// stack (<see cref="Volume"/>): one interlocked add per request, nothing allocated. Status reads the totals;
/// rates (IOPS, MiB/s) are two readings apart, as Prometheus and <c>actorcache top</c> compute them.
/// </summary>
public sealed class VolumeIoCounters
{
    // Reads and writes on separate cache lines: a reader on one core and a writer on another do not bounce one line.
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct Pair
    {
        [FieldOffset(0)] public long Requests;
        [FieldOffset(8)] public long Bytes;
    }

    private Pair _reads, _writes;

    public void CountRead(int bytes)
    {
        Interlocked.Increment(ref _reads.Requests);
        Interlocked.Add(ref _reads.Bytes, bytes);
    }

    public void CountWrite(int bytes)
    {
        Interlocked.Increment(ref _writes.Requests);
        Interlocked.Add(ref _writes.Bytes, bytes);
    }

    public VolumeIoTotals Read() =>
        new(Volatile.Read(ref _reads.Requests), Volatile.Read(ref _reads.Bytes), Volatile.Read(ref _writes.Requests), Volatile.Read(ref _writes.Bytes));
}

/// <summary>Totals since the volume was opened: read and write requests and their bytes (trims and zeroes are not writes here).</summary>
public readonly record struct VolumeIoTotals(long Reads, long ReadBytes, long Writes, long WrittenBytes);
