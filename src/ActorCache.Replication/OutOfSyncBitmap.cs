using System.Buffers.Binary;
using System.Numerics;
using ActorCache.Blocks;
using ActorCache.Cache;

namespace ActorCache.Replication;

/// <summary>
/// Which 4 KiB blocks a peer may lack (DESIGN §4: one bit per block). Not thread-safe: the link's lock guards it.
/// </summary>
internal sealed class OutOfSyncBitmap
{
    private readonly ulong[] _words;

    public OutOfSyncBitmap(long blocks)
    {
        Blocks = blocks;
        _words = new ulong[(blocks + 63) / 64];
    }

    public long Blocks { get; }

    /// <summary>Blocks set.</summary>
    public long Count { get; private set; }

    /// <summary>CRC32C of the bits (ties a file saved beside the bitmap to this very content).</summary>
    public uint Checksum() => Crc32C.Compute(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_words.AsSpan()));

    public void Set(long block, long count) => Change(block, count, set: true);

    /// <summary>Marks every block a batch's entries wrote.</summary>
    public void Set(ReadOnlySpan<LogEntry> entries)
    {
        foreach (var entry in entries) Set(entry.Block, entry.BlockCount);
    }

    public void Clear(long block, long count) => Change(block, count, set: false);

    /// <summary>Word at a time, so marking a whole large volume (a full resync) stays cheap under the link's lock.</summary>
    private void Change(long block, long count, bool set)
    {
        var end = Math.Min(block + count, Blocks);
        while (block < end)
        {
            var word = (int)(block >> 6);
            var from = (int)(block & 63);
            var bits = (int)Math.Min(64 - from, end - block);
            var mask = bits == 64 ? ulong.MaxValue : ((1UL << bits) - 1) << from;
            ref var w = ref _words[word];
            var changed = set ? mask & ~w : mask & w;
            if (set) w |= mask;
            else w &= ~mask;
            Count += set ? BitOperations.PopCount(changed) : -BitOperations.PopCount(changed);
            block += bits;
        }
    }

    public void SetAll() => Set(0, Blocks);

    /// <summary>Sets every block set in <paramref name="other"/> (of the same size).</summary>
    public void Add(OutOfSyncBitmap other)
    {
        if (other.Blocks != Blocks) throw new ArgumentException("bitmaps of different sizes");
        for (var i = 0; i < _words.Length; i++)
        {
            Count += BitOperations.PopCount(other._words[i] & ~_words[i]);
            _words[i] |= other._words[i];
        }
    }

    public bool IsSet(long block) => (_words[block >> 6] & (1UL << (int)(block & 63))) != 0;

    /// <summary>The first run of set blocks at or after <paramref name="from"/>, at most <paramref name="maxBlocks"/> long; false when none.</summary>
    public bool NextRun(long from, int maxBlocks, out long start, out int count)
    {
        start = -1;
        count = 0;
        var word = (int)(from >> 6);
        if (word >= _words.Length) return false;
        var current = _words[word] & (ulong.MaxValue << (int)(from & 63));
        while (current == 0)
        {
            if (++word >= _words.Length) return false;
            current = _words[word];
        }
        start = ((long)word << 6) + BitOperations.TrailingZeroCount(current);
        var b = start;
        while (b < Blocks && count < maxBlocks && IsSet(b))
        {
            b++;
            count++;
        }
        return true;
    }

    // ---- persistence ------------------------------------------------------------------------

    public const string FileName = "out-of-sync.bitmap";
    private const ulong Magic = 0x31544D4253434F41; // "AOCSBMT1" little-endian
    private const int HeaderSize = 64;

    [Flags]
    public enum FileFlags : uint
    {
        None = 0,
        /// <summary>Written while the link runs: what is in memory may have moved on; after a crash the file says nothing, a full resync follows.</summary>
        Dirty = 1,
        /// <summary>The peer has connected at least once (a peer that then reports no state has lost its disk).</summary>
        PeerSeen = 2,
    }

    /// <summary>What a persisted bitmap file says.</summary>
    public readonly record struct Saved(FileFlags Flags, Guid VolumeId, long LastSequence);

    /// <summary>
    /// Layout, little-endian: magic (8), flags (4), reserved (4), primary volume id (16), last batch sequence the
    /// bitmap accounts for (8), blocks (8), reserved (12), CRC32C of the whole file with this field zero (4),
    /// then the bitmap words.
    /// </summary>
    public void Save(string directory, Saved saved)
    {
        var content = new byte[HeaderSize + _words.Length * 8];
        var span = content.AsSpan();
        BinaryPrimitives.WriteUInt64LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], (uint)saved.Flags);
        saved.VolumeId.TryWriteBytes(span[16..32]);
        BinaryPrimitives.WriteInt64LittleEndian(span[32..], saved.LastSequence);
        BinaryPrimitives.WriteInt64LittleEndian(span[40..], Blocks);
        for (var i = 0; i < _words.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(span[(HeaderSize + i * 8)..], _words[i]);
        BinaryPrimitives.WriteUInt32LittleEndian(span[60..], Crc32C.Compute(span));
        Directory.CreateDirectory(directory);
        AtomicFile.Replace(Path.Combine(directory, FileName), span);
    }

    /// <summary>Loads the persisted bits into this bitmap; null when there is no file, or it is damaged or of another size (then nothing is loaded).</summary>
    public Saved? Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return null;
        var content = File.ReadAllBytes(path);
        if (content.Length != HeaderSize + _words.Length * 8) return null;
        var span = content.AsSpan();
        if (BinaryPrimitives.ReadUInt64LittleEndian(span) != Magic || BinaryPrimitives.ReadInt64LittleEndian(span[40..]) != Blocks) return null;
        var stored = BinaryPrimitives.ReadUInt32LittleEndian(span[60..]);
        BinaryPrimitives.WriteUInt32LittleEndian(span[60..], 0);
        if (Crc32C.Compute(span) != stored) return null;
        Count = 0;
        for (var i = 0; i < _words.Length; i++)
        {
            _words[i] = BinaryPrimitives.ReadUInt64LittleEndian(span[(HeaderSize + i * 8)..]);
            Count += BitOperations.PopCount(_words[i]);
        }
        return new Saved((FileFlags)BinaryPrimitives.ReadUInt32LittleEndian(span[8..]), new Guid(span[16..32]),
            BinaryPrimitives.ReadInt64LittleEndian(span[32..]));
    }
}
