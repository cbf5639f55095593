namespace ActorCache.Cache;

/// <summary>Where the newest version of a block is.</summary>
public enum BlockLocation : byte { Backing = 0, Ring = 1, Log = 2, Zero = 3 }

/// <summary>
/// The block index: for every 4 KiB block of a volume, where its newest version lives (ring slot, log
/// address, a logged trim/zero, or nothing: the backing). Eight bytes per block, in per-extent arrays
/// allocated on first use and dropped when the extent is clean again, so the budget is 8 bytes per
/// cached block while an extent is in use. Each extent has one writer at a time: its extent actor
/// (recovery, before any actor exists); readers read without locks.
/// </summary>
public sealed class BlockIndex
{
    public const int ExtentBlocksShift = 10; // 1024 blocks = 4 MiB
    public const int ExtentBlocks = 1 << ExtentBlocksShift;
    private const int KindShift = 62;
    private const ulong ValueMask = (1UL << KindShift) - 1;

    private readonly ulong[]?[] _extents;

    public BlockIndex(long blocks)
    {
        Blocks = blocks;
        _extents = new ulong[]?[(blocks + ExtentBlocks - 1) >> ExtentBlocksShift];
    }

    public long Blocks { get; }

    public static ulong Encode(BlockLocation location, long value) => ((ulong)location << KindShift) | ((ulong)value & ValueMask);

    /// <summary>
    /// A trim/zero not logged yet: named by its ticket (unique, so the flusher's swap to the logged
    /// entry cannot hit a later trim of the same block); logged ones are named by their batch header.
    /// </summary>
    public static ulong UnloggedZero(long ticket) => Encode(BlockLocation.Zero, UnloggedFlag | ticket);

    private const long UnloggedFlag = 1L << 61;

    /// <summary>True for entries that name a log record (what recovery rebuilds); false for ring slots and unlogged trims/zeros.</summary>
    public static bool IsLogged(ulong entry) =>
        LocationOf(entry) == BlockLocation.Log || (LocationOf(entry) == BlockLocation.Zero && (ValueOf(entry) & UnloggedFlag) == 0);

    public static BlockLocation LocationOf(ulong entry) => (BlockLocation)(entry >> KindShift);

    public static long ValueOf(ulong entry) => (long)(entry & ValueMask);

    public ulong Get(long block)
    {
        var extent = Volatile.Read(ref _extents[block >> ExtentBlocksShift]);
        return extent is null ? 0 : Volatile.Read(ref extent[block & (ExtentBlocks - 1)]);
    }

    public void Set(long block, ulong entry)
    {
        ref var slot = ref _extents[block >> ExtentBlocksShift];
        var extent = Volatile.Read(ref slot);
        if (extent is null)
        {
            if (entry == 0) return;
            extent = new ulong[ExtentBlocks];
            Volatile.Write(ref slot, extent);
        }
        Volatile.Write(ref extent[block & (ExtentBlocks - 1)], entry);
    }

    /// <summary>Replaces the entry only if it is still <paramref name="expected"/> (a newer write wins).</summary>
    public bool Replace(long block, ulong expected, ulong entry)
    {
        var extent = Volatile.Read(ref _extents[block >> ExtentBlocksShift]);
        if (extent is null) return expected == 0 && entry == 0;
        return Interlocked.CompareExchange(ref extent[block & (ExtentBlocks - 1)], entry, expected) == expected;
    }

    public int ExtentCount => _extents.Length;

    /// <summary>Blocks of one extent whose newest version is not on the backing.</summary>
    public int CachedBlocksIn(long extent)
    {
        var entries = Volatile.Read(ref _extents[extent]);
        if (entries is null) return 0;
        var count = 0;
        foreach (var entry in entries)
            if (entry != 0) count++;
        return count;
    }

    /// <summary>
    /// Drops a clean extent's array. Readers still holding it read zeros (the backing), which is right;
    /// the extent's next writer allocates a new one.
    /// </summary>
    public void ReleaseExtent(long extent)
    {
        if (CachedBlocksIn(extent) != 0) throw new InvalidOperationException($"extent {extent} still has cached blocks");
        Volatile.Write(ref _extents[extent], null);
    }

    /// <summary>The first block in [from, to) whose entry is not on the backing, or <paramref name="to"/>.</summary>
    public long NextCached(long from, long to)
    {
        while (from < to)
        {
            var extent = Volatile.Read(ref _extents[from >> ExtentBlocksShift]);
            if (extent is null)
            {
                from = ((from >> ExtentBlocksShift) + 1) << ExtentBlocksShift; // a whole extent with nothing cached
                continue;
            }
            if (Volatile.Read(ref extent[from & (ExtentBlocks - 1)]) != 0) return from;
            from++;
        }
        return to;
    }

    /// <summary>Bytes the index occupies now (for the 16-bytes-per-block budget).</summary>
    public long FootprintBytes => _extents.LongLength * 8 + _extents.Count(e => e is not null) * (long)ExtentBlocks * 8;

    /// <summary>Blocks whose newest version is not on the backing.</summary>
    public long CachedBlocks
    {
        get
        {
            long count = 0;
            foreach (var extent in _extents)
                if (extent is not null)
                    foreach (var entry in extent)
                        if (entry != 0) count++;
            return count;
        }
    }

    /// <summary>Every non-backing entry, in block order (for comparing a recovered index with a runtime one).</summary>
    public IEnumerable<(long Block, ulong Entry)> Entries()
    {
        for (var e = 0; e < _extents.Length; e++)
        {
            var extent = _extents[e];
            if (extent is null) continue;
            for (var i = 0; i < ExtentBlocks; i++)
                if (extent[i] != 0) yield return (((long)e << ExtentBlocksShift) + i, extent[i]);
        }
    }
}
