namespace ActorCache.Cache;

/// <summary>Where the newest version of a block is.</summary>
public enum BlockLocation : byte { Backing = 0, Ring = 1, Log = 2, Zero = 3 }

/// <summary>
/// The block index: for every 4 KiB block of a volume, where its newest version lives (ring slot, log
/// address, a logged trim/zero, or nothing: the backing). Eight bytes per block, in per-extent arrays
/// allocated on first use, so the budget is 8 bytes per cached block once an extent is in use.
/// Writers hold the cache's append lock (updates happen in log order); readers read without locks.
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
