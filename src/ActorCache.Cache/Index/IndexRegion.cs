namespace ActorCache.Cache;

/// <summary>
/// The index entries of one region (65,536 blocks, 256 MiB) that are not on the backing: an
/// open-addressing table (linear probing) of 8-byte words, each a block's offset in the region (16 bits)
/// and its entry packed into 48 bits. Sized so it is 62-80% full (10-13 bytes per cached block);
/// removals leave tombstones (the offset with the backing's entry) until the table is rebuilt.
/// </summary>
/// <remarks>
/// One writer (the index's), lock-free readers. A word is written with one aligned store, so a reader
/// sees an old or a new word, never half of each; a probe stops at an empty word, and no word ever
/// becomes empty again in a published table, so a key that is present is always found. Rebuilding
/// (growing, shrinking, dropping tombstones, or copying a table a capture froze) fills a new array
/// and publishes it; the old one is never written again.
/// </remarks>
internal sealed class IndexRegion
{
    public const int KeyBits = 16;
    public const int KeyMask = (1 << KeyBits) - 1;
    private const int EntryBits = 64 - KeyBits; // 48: kind (2), unlogged flag (1), value (45)
    private const ulong EntryMask = (1UL << EntryBits) - 1;
    private const int ValueBits = EntryBits - 3;
    private const ulong ValueMask = (1UL << ValueBits) - 1;
    /// <summary>Tickets of unlogged trims wrap below this, so no word is ever <see cref="Empty"/>.</summary>
    public const long MaxTicket = (1L << ValueBits) - 1;
    private const ulong Empty = ulong.MaxValue;
    private const int MinCapacity = 4;
    private const int DenseScan = 64; // above this many cached blocks, finding the next one probes block by block

    private ulong[] _table = NewTable(MinCapacity);
    private int _used; // live words and tombstones: what probing walks over
    private bool _frozen;

    /// <summary>Cached blocks (non-backing entries) in the region. Written by the one writer.</summary>
    public int Live { get; private set; }

    public int ChangedInSweep;

    public ulong[] Table => Volatile.Read(ref _table);

    public long FootprintBytes => 48 + 24 + Volatile.Read(ref _table).LongLength * 8;

    private static ulong[] NewTable(int capacity)
    {
        var table = GC.AllocateUninitializedArray<ulong>(capacity);
        table.AsSpan().Fill(Empty);
        return table;
    }

    /// <summary>Where probing for <paramref name="key"/> starts: a multiplicative hash scaled to the table (any length, not only powers of two).</summary>
    private static int Home(int key, int capacity) => (int)Math.BigMul((ulong)key * 0x9E3779B97F4A7C15UL, (ulong)capacity, out _);

    public ulong Get(int key)
    {
        var table = Volatile.Read(ref _table);
        var i = Home(key, table.Length);
        while (true)
        {
            var word = Volatile.Read(ref table[i]);
            if (word == Empty) return 0;
            if ((int)(word >> EntryBits) == key) return Unpack(word);
            if (++i == table.Length) i = 0;
        }
    }

    /// <summary>Points the block at offset <paramref name="key"/> at <paramref name="entry"/> (0: the backing). The one writer only.</summary>
    public void Set(int key, ulong entry)
    {
        if (_frozen) Rebuild(CapacityFor(Live + 1)); // a capture still reads the current table: change a copy
        var packed = Pack(key, entry);
        var table = _table;
        var i = Home(key, table.Length);
        var reusable = -1;
        while (true)
        {
            var word = table[i];
            if (word == Empty) break;
            if ((int)(word >> EntryBits) == key)
            {
                var old = word & EntryMask;
                if (old == (packed & EntryMask)) return;
                Volatile.Write(ref table[i], packed);
                if (old == 0) Live++;
                else if (entry == 0)
                {
                    Live--;
                    if (table.Length > MinCapacity && Live * 10 < table.Length * 3) Rebuild(CapacityFor(Live)); // mostly empty now: shrink
                }
                return;
            }
            if ((word & EntryMask) == 0 && reusable < 0) reusable = i; // a tombstone this key may take
            if (++i == table.Length) i = 0;
        }
        if (entry == 0) return; // not cached, and not to be
        if (reusable >= 0)
        {
            Volatile.Write(ref table[reusable], packed);
            Live++;
            return;
        }
        if ((_used + 1) * 5L > table.Length * 4L)
        {
            Rebuild(CapacityFor(Live + 1));
            Set(key, entry);
            return;
        }
        Volatile.Write(ref table[i], packed);
        Live++;
        _used++;
    }

    /// <summary>
    /// Makes room for <paramref name="more"/> entries at once. Loading entries in the order of another
    /// table (hash order) into a table that grows as it goes would pack them into its first slots, one
    /// long cluster, so a bulk load sizes the table first. The one writer only.
    /// </summary>
    public void Reserve(int more)
    {
        if ((_used + more) * 5L > _table.Length * 4L) Rebuild(CapacityFor(Live + more));
    }

    /// <summary>Drops tombstones and shrinks a table that holds mostly them (the destager's sweeps). The one writer only.</summary>
    public void Compact()
    {
        if (_table.Length > CapacityFor(Live) && (_used - Live) * 4L > _table.Length) Rebuild(CapacityFor(Live));
    }

    /// <summary>The current table, frozen: the writer copies it before changing anything, so the caller may read it at leisure.</summary>
    public ulong[] Freeze()
    {
        _frozen = true;
        return _table;
    }

    /// <summary>The smallest offset in [from, to) whose entry is not the backing, or -1.</summary>
    public int NextKey(int from, int to)
    {
        if (Live > DenseScan)
        {
            for (var key = from; key < to; key++)
                if (Get(key) != 0) return key;
            return -1;
        }
        var best = -1;
        foreach (var word in Volatile.Read(ref _table))
        {
            if (word == Empty || (word & EntryMask) == 0) continue;
            var key = (int)(word >> EntryBits);
            if (key >= from && key < to && (best < 0 || key < best)) best = key;
        }
        return best;
    }

    /// <summary>62.5% full after a rebuild: growing to 80% before the next.</summary>
    private static int CapacityFor(int live) => Math.Max(MinCapacity, (int)(live * 1.6) + 1);

    private void Rebuild(int capacity)
    {
        var table = NewTable(capacity);
        foreach (var word in _table)
        {
            if (word == Empty || (word & EntryMask) == 0) continue;
            var i = Home((int)(word >> EntryBits), capacity);
            while (table[i] != Empty)
                if (++i == capacity) i = 0;
            table[i] = word;
        }
        _used = Live;
        _frozen = false;
        Volatile.Write(ref _table, table);
    }

    private static ulong Pack(int key, ulong entry)
    {
        var kind = entry >> 62;
        var value = entry & ((1UL << 61) - 1);
        if (value > ValueMask) ThrowTooLarge(entry);
        return ((ulong)key << EntryBits) | (kind << (EntryBits - 2)) | (((entry >> 61) & 1) << ValueBits) | value;
    }

    private static ulong Unpack(ulong word) =>
        ((word >> (EntryBits - 2)) & 3) << 62 | ((word >> ValueBits) & 1) << 61 | (word & ValueMask);

    /// <summary>The offset and entry a table word holds; false for an empty word.</summary>
    public static bool TryUnpack(ulong word, out int key, out ulong entry)
    {
        key = (int)(word >> EntryBits);
        entry = word == Empty ? 0 : Unpack(word);
        return word != Empty;
    }

    private static void ThrowTooLarge(ulong entry) =>
        throw new InvalidOperationException($"index entry {entry:x} does not fit in 45 bits: the log has passed 128 PiB of addresses");
}
