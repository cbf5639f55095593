namespace ActorCache.Cache;

/// <summary>
/// The sync points whose state must stay readable although the destager moves on: kept snapshots and
/// open views of the past, by the sequence number of the batch that closes them. The destager ends every
/// step at a protected point and, past it, preserves the backing blocks it overwrites (copy-on-write into
/// the <see cref="SnapshotStore"/>), so backing + log (+ store) still make up the volume at that point.
/// </summary>
/// <remarks>
/// Added only through the destager actor (between steps, so no step already planned can pass a point
/// being protected), removed by anyone (a view that closes, a snapshot deleted), read by the planner
/// for every destaged block: the points are a sorted array replaced on change, searched without a lock.
/// </remarks>
internal sealed class ProtectedPoints
{
    private readonly Lock _gate = new();
    private readonly Dictionary<long, int> _counts = [];
    private readonly Dictionary<long, int> _kept = []; // the part of each count that kept snapshots hold (the rest: open views)
    private long[] _sorted = [];

    public ProtectedPoints(IEnumerable<long> kept)
    {
        foreach (var sequence in kept) Add(sequence, kept: true);
    }

    /// <summary>Protects a point once more: for a kept snapshot, or for an open view of the past.</summary>
    public void Add(long sequence, bool kept)
    {
        lock (_gate)
        {
            _counts[sequence] = _counts.GetValueOrDefault(sequence) + 1;
            if (kept) _kept[sequence] = _kept.GetValueOrDefault(sequence) + 1;
            Publish();
        }
    }

    public void Remove(long sequence, bool kept)
    {
        lock (_gate)
        {
            if (kept && !Decrement(_kept, sequence)) return;
            Decrement(_counts, sequence);
            Publish();
        }
    }

    /// <summary>
    /// The oldest point a kept snapshot protects and no open view reads (a client of its export, a thin
    /// clone reading through to it), or null: the one to expire when preserved copies need more room
    /// than allowed. A snapshot someone is reading is not taken from under them, nor one <paramref name="pinned"/> says is needed.
    /// </summary>
    public long? OldestKept(Func<long, bool>? pinned = null)
    {
        lock (_gate)
        {
            long? oldest = null;
            foreach (var (sequence, kept) in _kept)
                if (_counts.GetValueOrDefault(sequence) == kept && (oldest is null || sequence < oldest) && pinned?.Invoke(sequence) != true) oldest = sequence;
            return oldest;
        }
    }

    /// <summary>Drops every kept snapshot's protection of <paramref name="sequence"/> (open views keep theirs).</summary>
    public void Expire(long sequence)
    {
        lock (_gate)
        {
            if (!_kept.Remove(sequence, out var count)) return;
            for (var i = 0; i < count; i++) Decrement(_counts, sequence);
            Publish();
        }
    }

    private static bool Decrement(Dictionary<long, int> counts, long sequence)
    {
        if (!counts.TryGetValue(sequence, out var count)) return false;
        if (count <= 1) counts.Remove(sequence);
        else counts[sequence] = count - 1;
        return true;
    }

    private void Publish() => Volatile.Write(ref _sorted, [.. _counts.Keys.Order()]);

    public int Count => Volatile.Read(ref _sorted).Length;

    public bool Contains(long sequence) => Array.BinarySearch(Volatile.Read(ref _sorted), sequence) >= 0;

    public bool IsEmpty => Count == 0;

    /// <summary>The first protected point at or after <paramref name="sequence"/>, or null.</summary>
    public long? FirstFrom(long sequence)
    {
        var sorted = Volatile.Read(ref _sorted);
        var at = LowerBound(sorted, sequence);
        return at < sorted.Length ? sorted[at] : null;
    }

    /// <summary>True when some point lies in [<paramref name="from"/>, <paramref name="to"/>].</summary>
    public bool AnyIn(long from, long to)
    {
        if (to < from) return false;
        var sorted = Volatile.Read(ref _sorted);
        var at = LowerBound(sorted, from);
        return at < sorted.Length && sorted[at] <= to;
    }

    /// <summary>The only protected point in [<paramref name="from"/>, <paramref name="to"/>], or null when there are none or several.</summary>
    public long? OnlyIn(long from, long to)
    {
        if (to < from) return null;
        var sorted = Volatile.Read(ref _sorted);
        var at = LowerBound(sorted, from);
        if (at >= sorted.Length || sorted[at] > to) return null;
        return at + 1 < sorted.Length && sorted[at + 1] <= to ? null : sorted[at];
    }

    public IReadOnlyList<long> ToList() => Volatile.Read(ref _sorted);

    /// <summary>The index of the first element at or above <paramref name="value"/>.</summary>
    private static int LowerBound(long[] sorted, long value)
    {
        var at = Array.BinarySearch(sorted, value);
        return at >= 0 ? at : ~at;
    }
}
