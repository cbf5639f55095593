namespace ActorCache.Cache;

/// <summary>Where the newest version of a block is.</summary>
public enum BlockLocation : byte { Backing = 0, Ring = 1, Log = 2, Zero = 3 }

/// <summary>
/// The block index: for every 4 KiB block of a volume, where its newest version lives (ring slot, log
/// address, a logged trim/zero, or nothing: the backing). It costs per cached block, not per extent
/// touched: the volume is cut into regions of 65,536 blocks (256 MiB), and a region with cached blocks
/// holds one small open-addressing table of 8-byte words, each the block's offset in the region and its
/// entry packed together (<see cref="IndexRegion"/>), sized to 1.25-1.6 words per cached block. So
/// 10-13 bytes per cached block at any density, plus 8 bytes per region of the volume.
/// </summary>
/// <remarks>
/// One writer at a time: for the live index of a cache that is its <see cref="AppendQueue"/> (every
/// change is made under the queue's lock, which is what keeps the index in log order); for an index
/// being built (recovery, a view of an older generation), whoever builds it. Readers read without
/// locks or allocation: a word is one aligned 8-byte store, and a table that is replaced (grown,
/// shrunk, or copied because a capture still reads it) is never written again, so a reader that took
/// the old one reads a state that was true when its lookup began. The region array is replaced when
/// the volume grows (<see cref="Grow"/>); readers take the array reference once per lookup.
/// </remarks>
public sealed class BlockIndex
{
    public const int ExtentBlocksShift = 10; // 1024 blocks = 4 MiB: the destager's unit of parallel backing writes
    public const int ExtentBlocks = 1 << ExtentBlocksShift;
    internal const int RegionShift = IndexRegion.KeyBits;
    private const int KindShift = 62;
    private const ulong ValueMask = (1UL << KindShift) - 1;
    private const long UnloggedFlag = 1L << 61;

    private IndexRegion?[] _regions;
    private long _blocks;
    private int _sweep; // how many idle sweeps have run: a region remembers the sweep it was last changed in

    public BlockIndex(long blocks)
    {
        _blocks = blocks;
        _regions = new IndexRegion?[RegionsFor(blocks)];
    }

    private static long RegionsFor(long blocks) => (blocks + (1L << RegionShift) - 1) >> RegionShift;

    public long Blocks => Volatile.Read(ref _blocks);

    /// <summary>
    /// Covers <paramref name="blocks"/> blocks from now on (a volume grown online): a larger region array
    /// holding the same regions. The one writer only, so no change is made to the old array meanwhile.
    /// </summary>
    public void Grow(long blocks)
    {
        if (blocks <= _blocks) return;
        var regions = new IndexRegion?[RegionsFor(blocks)];
        _regions.AsSpan().CopyTo(regions);
        Volatile.Write(ref _regions, regions);
        Volatile.Write(ref _blocks, blocks);
    }

    public static ulong Encode(BlockLocation location, long value) => ((ulong)location << KindShift) | ((ulong)value & ValueMask);

    /// <summary>
    /// A trim/zero not logged yet: named by its ticket (unique among those in flight, so the flusher's
    /// swap to the logged entry cannot hit a later trim of the same block); logged ones are named by
    /// their batch header. Tickets wrap at 2^45 - 1, far beyond what is ever in flight at once.
    /// </summary>
    public static ulong UnloggedZero(long ticket) => Encode(BlockLocation.Zero, UnloggedFlag | (ticket % IndexRegion.MaxTicket));

    /// <summary>True for entries that name a log record (what recovery rebuilds); false for ring slots and unlogged trims/zeros.</summary>
    public static bool IsLogged(ulong entry) =>
        LocationOf(entry) == BlockLocation.Log || (LocationOf(entry) == BlockLocation.Zero && (ValueOf(entry) & UnloggedFlag) == 0);

    /// <summary>The log address (bytes) an entry that <see cref="IsLogged"/> names: its data block, or its batch header for a trim/zero.</summary>
    public static long LogAddressOf(ulong entry) => ValueOf(entry) << LogFormat.BlockShift;

    public static BlockLocation LocationOf(ulong entry) => (BlockLocation)(entry >> KindShift);

    public static long ValueOf(ulong entry) => (long)(entry & ValueMask);

    public ulong Get(long block)
    {
        var region = Volatile.Read(ref Volatile.Read(ref _regions)[block >> RegionShift]);
        return region is null ? 0 : region.Get((int)(block & IndexRegion.KeyMask));
    }

    /// <summary>Points a block at <paramref name="entry"/> (0: the backing). The one writer only.</summary>
    public void Set(long block, ulong entry)
    {
        ref var slot = ref _regions[block >> RegionShift];
        var region = slot;
        if (region is null)
        {
            if (entry == 0) return;
            region = new IndexRegion();
            Volatile.Write(ref slot, region);
        }
        region.Set((int)(block & IndexRegion.KeyMask), entry);
        region.ChangedInSweep = _sweep;
    }

    /// <summary>Makes room for <paramref name="count"/> more entries in the region of <paramref name="block"/> (a bulk load). The one writer only.</summary>
    public void Reserve(long block, int count)
    {
        ref var slot = ref _regions[block >> RegionShift];
        if (slot is null) Volatile.Write(ref slot, new IndexRegion());
        slot.Reserve(count);
    }

    /// <summary>Replaces the entry only if it is still <paramref name="expected"/> (a newer write wins). The one writer only.</summary>
    public bool Replace(long block, ulong expected, ulong entry)
    {
        if (Get(block) != expected) return false;
        Set(block, entry);
        return true;
    }

    /// <summary>
    /// Drops the regions that hold no cached block and have not changed for <paramref name="idleSweeps"/>
    /// calls of this method, shrinks tables left mostly empty, and counts this call as one more sweep. The
    /// one writer only. A region that comes and goes with every write would cost an allocation each time;
    /// an idle empty one costs its smallest table.
    /// </summary>
    public int DropIdlePages(int idleSweeps)
    {
        var dropped = 0;
        for (var r = 0; r < _regions.Length; r++)
        {
            var region = _regions[r];
            if (region is null) continue;
            if (region.Live == 0 && _sweep - region.ChangedInSweep >= idleSweeps)
            {
                Volatile.Write(ref _regions[r], null);
                dropped++;
            }
            else region.Compact();
        }
        _sweep++;
        return dropped;
    }

    /// <summary>
    /// Freezes the tables as they are now for <paramref name="visit"/> (a persisted copy of the index): the
    /// writer copies a frozen table before it next changes it, so the caller may read them at leisure. The
    /// one writer only (the capture is a point in log order).
    /// </summary>
    internal List<(long Region, ulong[] Table)> Capture()
    {
        var captured = new List<(long, ulong[])>();
        for (var r = 0; r < _regions.Length; r++)
            if (_regions[r] is { } region && region.Live > 0) captured.Add((r, region.Freeze()));
        return captured;
    }

    /// <summary>Every non-backing entry of a captured table (any order).</summary>
    internal static IEnumerable<(long Block, ulong Entry)> EntriesOf(long region, ulong[] table)
    {
        for (var i = 0; i < table.Length; i++)
            if (IndexRegion.TryUnpack(table[i], out var key, out var entry) && entry != 0)
                yield return ((region << RegionShift) + key, entry);
    }

    /// <summary>The first block in [from, to) whose entry is not on the backing, or <paramref name="to"/>.</summary>
    public long NextCached(long from, long to)
    {
        var regions = Volatile.Read(ref _regions);
        while (from < to)
        {
            var r = from >> RegionShift;
            var regionEnd = Math.Min(to, (r + 1) << RegionShift);
            var region = Volatile.Read(ref regions[r]);
            if (region is not null && region.Live > 0)
            {
                var key = region.NextKey((int)(from & IndexRegion.KeyMask), (int)(regionEnd - (r << RegionShift)));
                if (key >= 0) return (r << RegionShift) + key;
            }
            from = regionEnd;
        }
        return to;
    }

    /// <summary>Bytes the index occupies now (for the 16-bytes-per-block budget): the region array and every region's table.</summary>
    public long FootprintBytes
    {
        get
        {
            var all = Volatile.Read(ref _regions);
            var bytes = 24 + all.LongLength * 8;
            foreach (var region in all)
                if (region is not null) bytes += region.FootprintBytes;
            return bytes;
        }
    }

    /// <summary>Blocks whose newest version is not on the backing (exact when nobody writes meanwhile).</summary>
    public long CachedBlocks
    {
        get
        {
            long count = 0;
            foreach (var region in Volatile.Read(ref _regions))
                if (region is not null) count += region.Live;
            return count;
        }
    }

    /// <summary>Every non-backing entry, in block order (for comparing a recovered index with a runtime one).</summary>
    public IEnumerable<(long Block, ulong Entry)> Entries()
    {
        var regions = Volatile.Read(ref _regions);
        for (var r = 0; r < regions.Length; r++)
        {
            if (Volatile.Read(ref regions[r]) is not { } region) continue;
            var entries = EntriesOf(r, region.Table).ToList();
            entries.Sort((a, b) => a.Block.CompareTo(b.Block));
            foreach (var entry in entries) yield return entry;
        }
    }
}
