using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// What recovery found damaged (a corrupt record a later durable record proves was once complete), so
/// reads never serve it: blocks whose newest version may be in the damaged record fail with EIO.
/// Immutable once the volume is open.
/// </summary>
internal sealed class LogDamage
{
    public static readonly LogDamage None = new(null, null, false, 0);

    private readonly HashSet<long>? _blocks;
    private readonly bool _all;
    private readonly long _addressBlock;

    private LogDamage(string? reason, HashSet<long>? blocks, bool all, long address)
    {
        Reason = reason;
        _blocks = blocks;
        _all = all;
        _addressBlock = address >> LogFormat.BlockShift;
    }

    public static LogDamage From(RecoveryResult recovery) =>
        recovery.Corruption is null ? None : new LogDamage(recovery.Corruption, recovery.DamagedBlocks, recovery.AllDamaged, recovery.DamageAddress);

    /// <summary>Why the volume is read-only, or null for an intact log.</summary>
    public string? Reason { get; }

    public bool Any => Reason is not null;

    /// <summary>True when the newest version of the block may be in the damaged record.</summary>
    public bool IsDamaged(long block, ulong entry)
    {
        if (Reason is null || (!_all && _blocks is null)) return false;
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
