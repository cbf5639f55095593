namespace ActorCache.Cache;

/// <summary>
/// Reads logged batches back by sequence, raw (header block and data, exactly as written and as the
/// flusher published them): replication catch-up ships a returning peer the batches it missed from the
/// log instead of resyncing their blocks, so the peer gets the same history, in order.
/// </summary>
/// <remarks>
/// Reads race the destager: a segment may be released and reused under the reader. Every record read is
/// verified (header checksum, sequence, and every data entry's checksum), so a reused segment shows as a
/// record that cannot be read, never as wrong data; the caller then falls back to a resync. A read that
/// fails (an I/O error, the log closed) answers the same, with <see cref="Failure"/> saying why. One thread.
/// </remarks>
public sealed class LogTailReader
{
    private readonly ILogMedium _medium;
    private readonly LogWalker _walker;
    private readonly Guid _volumeId;
    private readonly LogEntry[] _entries = new LogEntry[LogFormat.MaxEntries];

    internal LogTailReader(ILogMedium medium, Guid volumeId, long address, long sequence)
    {
        _medium = medium;
        _volumeId = volumeId;
        _walker = new LogWalker(medium, volumeId);
        _walker.Seek(address, sequence);
    }

    /// <summary>The sequence of the batch read next.</summary>
    public long Sequence => _walker.Sequence;

    /// <summary>Where the batch read next is looked for.</summary>
    public long Address => _walker.Address;

    /// <summary>The last read that failed with an error rather than finding no such record (null: none).</summary>
    public string? Failure { get; private set; }

    /// <summary>Moves on to batch <paramref name="sequence"/>, reading headers only; false when a batch on the way is not in the log any more.</summary>
    public bool SkipTo(long sequence)
    {
        try
        {
            while (_walker.Sequence < sequence)
            {
                if (!_walker.TryRead()) return false;
                _walker.Advance();
            }
            return _walker.Sequence == sequence;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return Failed(e);
        }
    }

    /// <summary>The size in bytes (header block and data) of the batch read next, or -1 when it is not in the log (any more).</summary>
    public int NextSize()
    {
        try
        {
            return _walker.TryRead() ? (int)_walker.Header.SizeBytes : -1;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Failed(e);
            return -1;
        }
    }

    /// <summary>
    /// The entries of the batch read next, from its header alone (valid until the next call), and moves past it without
    /// reading its data; false when it is not in the log (any more). What a batch wrote, before it may be gone.
    /// </summary>
    public bool TrySkipNext(out ReadOnlySpan<LogEntry> entries)
    {
        entries = default;
        try
        {
            if (!_walker.TryRead()) return false;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return Failed(e);
        }
        entries = _walker.Entries;
        _walker.Advance();
        return true;
    }

    /// <summary>
    /// Reads the batch <see cref="NextSize"/> found into <paramref name="destination"/> (exactly that size), verifies
    /// it and moves past it; false when it was overwritten or damaged meanwhile (nothing is moved then).
    /// </summary>
    public bool TryReadNext(Span<byte> destination)
    {
        var expected = _walker.Header;
        try
        {
            // Header and data in one read, checked together: the walker's header was read first, and the segment may have been reused since.
            if (destination.Length != expected.SizeBytes || !_medium.TryRead(_walker.Address, destination)) return false;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return Failed(e);
        }
        if (!LogFormat.TryReadHeader(destination[..LogFormat.BlockSize], _volumeId, out var header, _entries) ||
            header.Sequence != expected.Sequence || header.SizeBytes != expected.SizeBytes ||
            !LogFormat.DataMatches(_entries.AsSpan(0, header.EntryCount), destination[LogFormat.BlockSize..])) return false;
        _walker.Advance();
        return true;
    }

    private bool Failed(Exception e)
    {
        Failure = $"{e.GetType().Name}: {e.Message}";
        return false;
    }
}
