namespace ActorCache.Cache;

/// <summary>
/// A point the volume can be brought back to: the end of the batch that closed <paramref name="Generation"/>
/// (a completed FLUSH or FUA), written at <paramref name="TimeMicros"/> (the batch's wall-clock time, Unix
/// microseconds). Everything up to and including batch <paramref name="Sequence"/> is in it.
/// </summary>
public readonly record struct SyncPoint(long Generation, long TimeMicros, long Sequence, long EndAddress)
{
    public DateTimeOffset Time => DateTimeOffset.FromUnixTimeMilliseconds(TimeMicros / 1000).AddTicks(TimeMicros % 1000 * 10);
}

/// <summary>
/// The sync points the log still holds, oldest first (DESIGN §3 "Generations"): rebuilt by recovery,
/// appended when a generation closes (its sync point is durable everywhere the durability barrier
/// asks), trimmed as the destager moves the horizon past them. Generations are consecutive.
/// </summary>
/// <remarks>Written by the durability barrier (appends) and the destager (trims), read by anyone: a small lock.</remarks>
public sealed class LogHistory
{
    private readonly Lock _gate = new();
    private readonly List<SyncPoint> _points;
    private int _first; // points before this index are trimmed (compacted now and then)

    public LogHistory(IEnumerable<SyncPoint> recovered) => _points = [.. recovered];

    /// <summary>The newest closed sync point, or null when the log holds none.</summary>
    public SyncPoint? Latest
    {
        get
        {
            lock (_gate) return _points.Count > _first ? _points[^1] : null;
        }
    }

    public int Count
    {
        get
        {
            lock (_gate) return _points.Count - _first;
        }
    }

    internal void Add(SyncPoint point)
    {
        lock (_gate)
        {
            if (_points.Count > _first && point.Generation != _points[^1].Generation + 1)
                throw new InvalidOperationException($"generation {point.Generation} closed after {_points[^1].Generation}: generations must be consecutive");
            _points.Add(point);
        }
    }

    /// <summary>Forgets sync points whose batch is before <paramref name="sequence"/> (destaged: the log no longer covers them).</summary>
    internal void TrimBefore(long sequence)
    {
        lock (_gate)
        {
            while (_first < _points.Count && _points[_first].Sequence < sequence) _first++;
            if (_first > 4096 && _first > _points.Count / 2)
            {
                _points.RemoveRange(0, _first);
                _first = 0;
            }
        }
    }

    /// <summary>True when a sync point still held was closed by a batch from <paramref name="from"/> to <paramref name="to"/>.</summary>
    internal bool AnyBetween(long from, long to)
    {
        lock (_gate)
        {
            // Points are in batch order: the first one past the trim at or after from decides.
            for (var i = _first; i < _points.Count; i++)
                if (_points[i].Sequence >= from) return _points[i].Sequence <= to;
            return false;
        }
    }

    /// <summary>The sync point that closed <paramref name="generation"/>, if the log still covers it.</summary>
    public SyncPoint? Find(long generation)
    {
        lock (_gate)
        {
            for (var i = _first; i < _points.Count; i++)
                if (_points[i].Generation == generation) return _points[i];
            return null;
        }
    }

    /// <summary>The newest sync point written at or before <paramref name="time"/> (batch time, not when it was asked), if the log still covers it.</summary>
    public SyncPoint? AtOrBefore(DateTimeOffset time)
    {
        var micros = (time - DateTimeOffset.UnixEpoch).Ticks / 10;
        lock (_gate)
        {
            SyncPoint? found = null;
            for (var i = _first; i < _points.Count && _points[i].TimeMicros <= micros; i++) found = _points[i];
            return found;
        }
    }

    /// <summary>Every sync point the log still covers, oldest first.</summary>
    public IReadOnlyList<SyncPoint> ToList()
    {
        lock (_gate) return _points.GetRange(_first, _points.Count - _first);
    }
}
