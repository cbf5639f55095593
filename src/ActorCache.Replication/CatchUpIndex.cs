using ActorCache.Cache;

namespace ActorCache.Replication;

/// <summary>
/// What each batch a catch-up is to ship wrote, read from their headers before it starts (while the log still holds them
/// all): where the catch-up falls back to a resync after batch N-1, the peer lacks only the blocks batches N and later
/// wrote, not every block the outage marked. A batch's own entries, not a bitmap per batch: a block shipped early and
/// written again by a later batch is still resynced.
/// </summary>
internal sealed class CatchUpIndex
{
    /// <summary>Extents kept at most (16 bytes each): a longer log is not indexed, and a fallback resyncs every marked block.</summary>
    public const int MaxExtents = 2 << 20;

    private readonly List<long> _sequences = [];
    private readonly List<int> _firstExtent = [];
    private readonly List<(long Block, int Count)> _extents = [];

    /// <summary>The last batch indexed (-1: none).</summary>
    public long Through => _sequences.Count == 0 ? -1 : _sequences[^1];

    /// <summary>Adds the next batch, in order; false when the index would grow past <see cref="MaxExtents"/>.</summary>
    public bool Add(long sequence, ReadOnlySpan<LogEntry> entries)
    {
        if (_extents.Count + entries.Length > MaxExtents) return false;
        _sequences.Add(sequence);
        _firstExtent.Add(_extents.Count);
        foreach (var entry in entries)
        {
            // Adjacent entries of one batch (a large write split, sequential writes) become one run.
            if (_extents.Count > _firstExtent[^1] && _extents[^1] is var (block, count) && block + count == entry.Block)
                _extents[^1] = (block, count + entry.BlockCount);
            else _extents.Add((entry.Block, entry.BlockCount));
        }
        return true;
    }

    /// <summary>Marks in <paramref name="bitmap"/> every block the indexed batches from <paramref name="sequence"/> on wrote.</summary>
    public void MarkFrom(long sequence, OutOfSyncBitmap bitmap)
    {
        var first = _sequences.BinarySearch(sequence);
        if (first < 0) first = ~first;
        if (first >= _sequences.Count) return;
        for (var i = _firstExtent[first]; i < _extents.Count; i++) bitmap.Set(_extents[i].Block, _extents[i].Count);
    }
}
