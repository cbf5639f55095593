namespace ActorCache.Nbd;

/// <summary>
/// One <c>qemu:dirty-bitmap:NAME</c> context of a connection: the byte ranges that may differ between
/// the point NAME names and the export's, computed once when the client attached and held (offsets
/// only, no data) until it leaves. BLOCK_STATUS is answered from it by binary search, allocation-free.
/// </summary>
internal sealed class DirtyBitmap
{
    // Sorted, disjoint and never touching (touching ranges are merged), so extents alternate dirty and clean.
    private readonly long[] _starts;
    private readonly long[] _ends;

    public DirtyBitmap(string name, uint contextId, IReadOnlyList<(long Offset, long Length)> ranges)
    {
        Name = name;
        ContextId = contextId;
        // The catalog gives offset order already; sorting and merging here keeps the search correct whatever it gives.
        var merged = new List<(long Start, long End)>(ranges.Count);
        foreach (var (offset, length) in ranges.Where(r => r.Length > 0).OrderBy(r => r.Offset))
        {
            var end = offset + length;
            if (merged.Count > 0 && offset <= merged[^1].End)
                merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, end));
            else merged.Add((offset, end));
        }
        _starts = [.. merged.Select(r => r.Start)];
        _ends = [.. merged.Select(r => r.End)];
    }

    /// <summary>The bitmap's name, the part after <c>qemu:dirty-bitmap:</c>.</summary>
    public string Name { get; }

    public uint ContextId { get; }

    public int RangeCount => _starts.Length;

    /// <summary>
    /// Writes the extents that cover <c>[offset, offset + length)</c> as BLOCK_STATUS descriptors, dirty
    /// (<see cref="MetaContexts.StateDirty"/>) or clean (0), at most <paramref name="maxExtents"/> of them
    /// (the client asks again from where they end); returns how many were written. Never past the request.
    /// </summary>
    public int WriteExtents(Span<byte> destination, long offset, long length, int maxExtents)
    {
        var end = offset + length;
        var i = FirstEndingAfter(offset);
        var position = offset;
        var count = 0;
        while (position < end && count < maxExtents)
        {
            long next;
            uint flags;
            if (i < _starts.Length && _starts[i] <= position)
            {
                next = Math.Min(_ends[i], end);
                flags = MetaContexts.StateDirty;
                i++;
            }
            else
            {
                next = i < _starts.Length ? Math.Min(_starts[i], end) : end;
                flags = 0;
            }
            // A request's length is 32 bits, so no extent within it is longer.
            NbdReplyEncoder.WriteExtent(destination[(count * NbdReplyEncoder.ExtentSize)..], (uint)(next - position), flags);
            count++;
            position = next;
        }
        return count;
    }

    /// <summary>The index of the first range that ends after <paramref name="offset"/> (the count when none does).</summary>
    private int FirstEndingAfter(long offset)
    {
        int low = 0, high = _ends.Length;
        while (low < high)
        {
            var middle = (low + high) >>> 1;
            if (_ends[middle] <= offset) low = middle + 1;
            else high = middle;
        }
        return low;
    }
}
