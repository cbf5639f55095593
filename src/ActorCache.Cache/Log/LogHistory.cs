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

    private long _trimmedBefore; // under _gate: points of batches before it are gone for good

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
            // Closed only now (a peer confirmed it late) but already past what the backing holds: never restorable.
            if (point.Sequence < _trimmedBefore) return;
            if (_points.Count > _first && point.Generation != _points[^1].Generation + 1)
                throw new InvalidOperationException($"generation {point.Generation} closed after {_points[^1].Generation}: generations must be consecutive");
            _points.Add(point);
        }
    }

    /// <summary>Forgets every sync point closed so far (a mode switch: writes bypassed or will bypass the log); later ones are kept.</summary>
    internal void ForgetAll()
    {
        lock (_gate) _first = _points.Count;
    }

    /// <summary>
    /// Forgets sync points whose batch is before <paramref name="sequence"/> (destaged: the log no longer covers them), and any
    /// closed later with such a batch (one a peer confirms late).
    /// </summary>
    internal void TrimBefore(long sequence)
    {
        lock (_gate)
        {
            _trimmedBefore = Math.Max(_trimmedBefore, sequence);
            while (_first < _points.Count && _points[_first].Sequence < sequence) _first++;
            if (_first > 4096 && _first > _points.Count / 2)
            {
                _points.RemoveRange(0, _first);
                _first = 0;
            }
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
