using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// What is known damaged in a volume's log, so reads never serve it: a corrupt record recovery found (a
/// later durable record proves it was once complete), then blocks whose newest version may be in it fail
/// with EIO; and records the <see cref="LogScrub"/> found corrupt after the open, whose log blocks fail
/// with EIO. Either makes the volume read-only. Recovery's part is fixed at open; the scrub only adds.
/// </summary>
internal sealed class LogDamage
{
    private readonly string? _recoveryReason;
    private readonly HashSet<long>? _blocks;
    private readonly bool _all;
    private readonly long _addressBlock;
    private readonly Lock _gate = new();
    private volatile string? _scrubReason;
    // Log block ranges [From, To) of records the scrub found corrupt; replaced, never changed in place (read without a lock).
    private volatile (long From, long To)[] _records = [];

    private LogDamage(string? reason, HashSet<long>? blocks, bool all, long address)
    {
        _recoveryReason = reason;
        _blocks = blocks;
        _all = all;
        _addressBlock = address >> LogFormat.BlockShift;
    }

    /// <summary>The damage recovery found (none for an intact log); a new instance per open, since the scrub may add to it.</summary>
    public static LogDamage From(RecoveryResult recovery) =>
        new(recovery.Corruption, recovery.DamagedBlocks, recovery.AllDamaged, recovery.DamageAddress);

    /// <summary>Why the volume is read-only, or null for an intact log.</summary>
    public string? Reason => _recoveryReason ?? _scrubReason;

    public bool Any => Reason is not null;

    /// <summary>
    /// The log record at byte addresses [<paramref name="from"/>, <paramref name="to"/>) is corrupt: reads of the
    /// blocks whose newest version is there fail from now on, and the volume refuses writes with <paramref name="reason"/>.
    /// </summary>
    public void AddCorruptRecord(string reason, long from, long to)
    {
        lock (_gate)
        {
            _records = [.. _records, (from >> LogFormat.BlockShift, (to + LogFormat.BlockSize - 1) >> LogFormat.BlockShift)];
            _scrubReason ??= reason;
        }
    }

    /// <summary>True when log block <paramref name="logBlock"/> lies in a record the scrub found corrupt.</summary>
    public bool InCorruptRecord(long logBlock)
    {
        foreach (var (from, to) in _records)
            if (logBlock >= from && logBlock < to) return true;
        return false;
    }

    /// <summary>True when the newest version of the block may be in a damaged record.</summary>
    public bool IsDamaged(long block, ulong entry)
    {
        if (BlockIndex.LocationOf(entry) == BlockLocation.Log && InCorruptRecord(BlockIndex.ValueOf(entry))) return true;
        if (_recoveryReason is null || (!_all && _blocks is null)) return false;
        // Entries written after the damage (higher log addresses) are intact and newer.
        if (BlockIndex.LocationOf(entry) is BlockLocation.Log or BlockLocation.Zero && BlockIndex.ValueOf(entry) >= _addressBlock) return false;
        return _all || _blocks!.Contains(block);
    }

    public void ThrowIfDamaged(long block, ulong entry, string volume)
    {
        if (Reason is not null && IsDamaged(block, entry))
            BlockThrow.Error(BlockError.Io, $"volume {volume}: block {block} may be in a corrupt log record and is not served: {Reason}");
    }
}
