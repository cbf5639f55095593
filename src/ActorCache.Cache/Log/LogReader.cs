namespace ActorCache.Cache;

/// <summary>
/// Finds batches in the log the way the flusher placed them: at the tail if the batch fits in the
/// rest of the segment, otherwise at the start of the next segment.
/// </summary>
internal sealed class LogReader(ILogMedium medium, Guid volumeId)
{
    private readonly byte[] _header = GC.AllocateArray<byte>(LogFormat.BlockSize, pinned: true);
    public readonly LogEntry[] Entries = new LogEntry[LogFormat.MaxEntries];

    /// <summary>Where the flusher puts a batch of <paramref name="size"/> bytes when the log tail is at <paramref name="tail"/>.</summary>
    public static long Place(long tail, long size, long segmentSize)
    {
        var room = segmentSize - tail % segmentSize;
        return size <= room ? tail : tail + room;
    }

    private long NextSegmentStart(long address) => (address / medium.SegmentSize + 1) * medium.SegmentSize;

    /// <summary>Reads the header of batch <paramref name="sequence"/> at <paramref name="address"/> or, if the batch did not fit there, at the next segment start.</summary>
    public bool TryFind(ref long address, long sequence, out BatchHeader header)
    {
        if (TryReadAt(address, out header) && header.Sequence == sequence) return true;
        if (address % medium.SegmentSize != 0)
        {
            var next = NextSegmentStart(address);
            if (TryReadAt(next, out header) && header.Sequence == sequence)
            {
                address = next;
                return true;
            }
        }
        return false;
    }

    /// <summary>True when the block at <paramref name="address"/> is a valid header of this volume.</summary>
    public bool TryReadAt(long address, out BatchHeader header)
    {
        header = default;
        if (!medium.TryRead(address, _header)) return false;
        return LogFormat.TryReadHeader(_header, volumeId, out header, Entries);
    }

    /// <summary>
    /// True when the block at <paramref name="address"/> ends the log cleanly: never written (zeroes, or
    /// no segment), or a record older than <paramref name="sequence"/> left in a recycled segment file.
    /// </summary>
    public bool IsBlank(long address, long sequence)
    {
        if (!medium.TryRead(address, _header) || !_header.AsSpan().ContainsAnyExcept((byte)0)) return true;
        return LogFormat.TryReadHeader(_header, volumeId, out var stale, Entries) && stale.Sequence < sequence;
    }

    /// <summary>True when something was written where batch <paramref name="sequence"/> at <paramref name="address"/> (or its next-segment alternative) would be.</summary>
    public bool AnythingAt(long address, long sequence) =>
        !IsBlank(address, sequence) || (address % medium.SegmentSize != 0 && !IsBlank(NextSegmentStart(address), sequence));

    /// <summary>Byte address where the data of the batch whose header is at <paramref name="address"/> starts.</summary>
    public static long DataAddress(long address) => address + LogFormat.BlockSize;
}
