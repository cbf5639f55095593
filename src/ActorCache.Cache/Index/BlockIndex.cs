namespace ActorCache.Cache;

/// <summary>Where the newest version of a block is.</summary>
public enum BlockLocation : byte { Backing = 0, Ring = 1, Log = 2, Zero = 3 }

/// <summary>
/// The block index: for every 4 KiB block of a volume, where its newest version lives (ring slot, log
/// address, a logged trim/zero, or nothing: the backing). Eight bytes per block, in per-extent pages
/// (1024 blocks, 4 MiB) allocated on first use and dropped once the extent has been clean for a while.
/// </summary>
/// <remarks>
/// One writer at a time: for the live index of a cache that is its <see cref="AppendQueue"/> (every
/// change is made under the queue's lock, which is what keeps the index in log order); for an index
/// being built (recovery, a view of an older generation), whoever builds it. Readers read without
/// locks: an entry is one aligned 8-byte word, and a page, once dropped, is never written again (a
/// reader still holding it reads zeroes, the backing, which is right: it was dropped only when clean).
/// The page array is replaced when the volume grows (<see cref="Grow"/>, by the one writer); readers
/// take the array reference once per lookup, and the pages themselves move over unchanged.
/// </remarks>
public sealed class BlockIndex
{
    public const int ExtentBlocksShift = 10; // 1024 blocks = 4 MiB
    public const int ExtentBlocks = 1 << ExtentBlocksShift;
    private const int KindShift = 62;
    private const ulong ValueMask = (1UL << KindShift) - 1;
    private const long UnloggedFlag = 1L << 61;

    private ExtentPage?[] _pages;
    private long _blocks;
    private int _sweep; // how many idle sweeps have run: a page remembers the sweep it was last changed in

    public BlockIndex(long blocks)
    {
        _blocks = blocks;
        _pages = new ExtentPage?[(blocks + ExtentBlocks - 1) >> ExtentBlocksShift];
    }

    public long Blocks => Volatile.Read(ref _blocks);

    public int ExtentCount => Volatile.Read(ref _pages).Length;

    /// <summary>
    /// Covers <paramref name="blocks"/> blocks from now on (a volume grown online): a larger page array
    /// holding the same pages. The one writer only, so no change is made to the old array meanwhile.
    /// </summary>
    public void Grow(long blocks)
    {
        if (blocks <= _blocks) return;
        var pages = new ExtentPage?[(blocks + ExtentBlocks - 1) >> ExtentBlocksShift];
        _pages.AsSpan().CopyTo(pages);
        Volatile.Write(ref _pages, pages);
        Volatile.Write(ref _blocks, blocks);
    }

    public static ulong Encode(BlockLocation location, long value) => ((ulong)location << KindShift) | ((ulong)value & ValueMask);

    /// <summary>
    /// A trim/zero not logged yet: named by its ticket (unique, so the flusher's swap to the logged
    /// entry cannot hit a later trim of the same block); logged ones are named by their batch header.
    /// </summary>
    public static ulong UnloggedZero(long ticket) => Encode(BlockLocation.Zero, UnloggedFlag | ticket);

    /// <summary>True for entries that name a log record (what recovery rebuilds); false for ring slots and unlogged trims/zeros.</summary>
    public static bool IsLogged(ulong entry) =>
        LocationOf(entry) == BlockLocation.Log || (LocationOf(entry) == BlockLocation.Zero && (ValueOf(entry) & UnloggedFlag) == 0);

    public static BlockLocation LocationOf(ulong entry) => (BlockLocation)(entry >> KindShift);

    public static long ValueOf(ulong entry) => (long)(entry & ValueMask);

    public ulong Get(long block)
    {
        var page = Volatile.Read(ref Volatile.Read(ref _pages)[block >> ExtentBlocksShift]);
        return page is null ? 0 : Volatile.Read(ref page.Entries[block & (ExtentBlocks - 1)]);
    }

    /// <summary>Points a block at <paramref name="entry"/> (0: the backing). The one writer only.</summary>
    public void Set(long block, ulong entry)
    {
        ref var slot = ref _pages[block >> ExtentBlocksShift];
        var page = slot;
        if (page is null)
        {
            if (entry == 0) return;
            page = new ExtentPage();
            Volatile.Write(ref slot, page);
        }
        ref var current = ref page.Entries[block & (ExtentBlocks - 1)];
        if (current == 0 && entry != 0) page.Cached++;
        else if (current != 0 && entry == 0) page.Cached--;
        Volatile.Write(ref current, entry);
        page.ChangedInSweep = _sweep;
    }

    /// <summary>Replaces the entry only if it is still <paramref name="expected"/> (a newer write wins). The one writer only.</summary>
    public bool Replace(long block, ulong expected, ulong entry)
    {
        if (Get(block) != expected) return false;
        Set(block, entry);
        return true;
    }

    /// <summary>Blocks of one extent whose newest version is not on the backing.</summary>
    public int CachedBlocksIn(long extent) => Volatile.Read(ref Volatile.Read(ref _pages)[extent])?.Cached ?? 0;

    /// <summary>
    /// Drops the pages of extents that are clean and have not changed for <paramref name="idleSweeps"/>
    /// calls of this method, and counts this call as one more sweep. The one writer only. A page that
    /// comes and goes with every write would cost an allocation each time; an idle one costs 8 KiB.
    /// </summary>
    public int DropIdlePages(int idleSweeps)
    {
        var dropped = 0;
        for (var e = 0; e < _pages.Length; e++)
        {
            var page = _pages[e];
            if (page is null || page.Cached != 0 || _sweep - page.ChangedInSweep < idleSweeps) continue;
            Volatile.Write(ref _pages[e], null);
            dropped++;
        }
        _sweep++;
        return dropped;
    }

    /// <summary>The first block in [from, to) whose entry is not on the backing, or <paramref name="to"/>.</summary>
    public long NextCached(long from, long to)
    {
        var pages = Volatile.Read(ref _pages);
        while (from < to)
        {
            var page = Volatile.Read(ref pages[from >> ExtentBlocksShift]);
            if (page is null || page.Cached == 0)
            {
                from = ((from >> ExtentBlocksShift) + 1) << ExtentBlocksShift; // a whole extent with nothing cached
                continue;
            }
            if (Volatile.Read(ref page.Entries[from & (ExtentBlocks - 1)]) != 0) return from;
            from++;
        }
        return to;
    }

    /// <summary>Bytes the index occupies now (for the 16-bytes-per-block budget).</summary>
    public long FootprintBytes
    {
        get
        {
            var all = Volatile.Read(ref _pages);
            var pages = 0L;
            foreach (var page in all)
                if (page is not null) pages++;
            return all.LongLength * 8 + pages * (ExtentBlocks * 8L + 32);
        }
    }

    /// <summary>Blocks whose newest version is not on the backing (exact when nobody writes meanwhile).</summary>
    public long CachedBlocks
    {
        get
        {
            long count = 0;
            foreach (var page in Volatile.Read(ref _pages))
                if (page is not null) count += Volatile.Read(ref page.Cached);
            return count;
        }
    }

    /// <summary>Every non-backing entry, in block order (for comparing a recovered index with a runtime one).</summary>
    public IEnumerable<(long Block, ulong Entry)> Entries()
    {
        var pages = Volatile.Read(ref _pages);
        for (var e = 0; e < pages.Length; e++)
        {
            var page = pages[e];
            if (page is null) continue;
            for (var i = 0; i < ExtentBlocks; i++)
            {
                var entry = Volatile.Read(ref page.Entries[i]);
                if (entry != 0) yield return (((long)e << ExtentBlocksShift) + i, entry);
            }
        }
    }

    /// <summary>One extent's entries and its count of cached blocks (kept by the writer, read by anyone).</summary>
    private sealed class ExtentPage
    {
        public readonly ulong[] Entries = new ulong[ExtentBlocks];
        public int Cached;
        public int ChangedInSweep;
    }
}
