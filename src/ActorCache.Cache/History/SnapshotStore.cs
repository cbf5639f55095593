using System.Buffers.Binary;
using System.Collections.Concurrent;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Where backing blocks go before the destager overwrites them while a protected point still reads them
/// (DESIGN §3 "Snapshots": copy-on-write). One append-only file per volume, <c>preserved.store</c> in its
/// log directory, of batches laid out like the log's: a 4 KiB header, then the blocks.
/// <code>
/// header: magic "ACCOWBT1" (8), version 1 (2), reserved (2), entry count (4), volume id (16),
///         until (8), reserved (4), header CRC32C with this field zero (4), reserved (16),
///         entries from offset 64: block (8), data CRC32C (4), reserved (4)
/// </code>
/// A preserved copy of block B with <c>until</c> U is the block's content before a destage step whose
/// last batch is U overwrote it; for the volume at a sync point with batch sequence Q it is the right
/// copy when it is B's first copy with U greater than Q. The destager makes the store durable before
/// it overwrites the backing, so a copy is never lost to a crash. A copy no protected point reads any
/// more is dead; compaction writes the live ones to a new file and replaces the old one.
/// </summary>
/// <remarks>
/// Written by the destager only (appends, compaction); looked up by views of the past from any thread:
/// each block's copies are an immutable array replaced on change, and a copy names the file it is in,
/// so a read that races with compaction still reads the file it looked in.
/// </remarks>
internal sealed class SnapshotStore : IDisposable
{
    public const string FileName = "preserved.store";
    private const ulong Magic = 0x3154424F57434341; // "ACCOWBT1"
    private const int BlockSize = LogFormat.BlockSize;
    private const int EntriesOffset = 64;
    private const int EntrySize = 16;
    public const int MaxEntries = (BlockSize - EntriesOffset) / EntrySize;

    private readonly ILogDirectory _directory;
    private readonly Guid _volumeId;
    private readonly byte[] _header = GC.AllocateArray<byte>(BlockSize, pinned: true);
    private readonly List<StoreFile> _retired = [];
    private volatile StoreFile _file;

    /// <summary>One preserved copy: valid for sync points before batch <see cref="Until"/>, at <see cref="Offset"/> in <see cref="File"/>.</summary>
    public readonly record struct Copy(long Until, long Offset, uint Crc, StoreFile File);

    /// <summary>One store file and what is in it.</summary>
    public sealed class StoreFile(string path, IDurableFile handle)
    {
        public string Path { get; } = path; // the store's name: a compaction's new file takes it when it is renamed into place
        public IDurableFile Handle { get; } = handle;
        public ConcurrentDictionary<long, Copy[]> Copies { get; } = new();
        public long Length;
        public long Blocks;
        // Bytes made durable by the last fdatasync that succeeded (or found at open): what a failed one takes the copies back to.
        public long Synced;
    }

    private SnapshotStore(ILogDirectory directory, Guid volumeId, StoreFile file)
    {
        _directory = directory;
        _volumeId = volumeId;
        _file = file;
    }

    /// <summary>Why part of the store could not be read when it was opened, or null.</summary>
    public string? Damage { get; private set; }

    /// <summary>Bytes the store takes.</summary>
    public long Length => Interlocked.Read(ref _file.Length);

    /// <summary>Preserved copies held (live or dead).</summary>
    public long PreservedBlocks => Interlocked.Read(ref _file.Blocks);

    /// <summary>
    /// Opens (or creates) the store and reads every batch header. Batches from <paramref name="durableLength"/>
    /// on were written after the last checkpoint and may be torn: their data is checked too, and the first
    /// incomplete one is cut off with what follows (it was never made durable, so nothing relies on it).
    /// </summary>
    public static SnapshotStore Open(ILogDirectory directory, Guid volumeId, long durableLength)
    {
        directory.Delete(NewFileName); // a compaction that did not finish
        var file = directory.Open(FileName, FileMode.OpenOrCreate);
        var store = new SnapshotStore(directory, volumeId, new StoreFile(file.Path, file));
        store.Load(durableLength);
        return store;
    }

    private const string NewFileName = FileName + ".new";

    private void Load(long durableLength)
    {
        var file = _file;
        var fileLength = file.Handle.Length;
        var entries = new (long Block, uint Crc)[MaxEntries];
        var data = GC.AllocateUninitializedArray<byte>(MaxEntries * BlockSize);
        long offset = 0;
        while (offset + BlockSize <= fileLength)
        {
            if (file.Handle.Read(_header, offset) != BlockSize || !TryReadHeader(out var count, out var until, entries)) break;
            var size = (1L + count) * BlockSize;
            if (offset + size > fileLength) break;
            if (offset >= durableLength)
            {
                var span = data.AsSpan(0, count * BlockSize);
                if (file.Handle.Read(span, offset + BlockSize) != span.Length) break;
                var torn = false;
                for (var i = 0; i < count && !torn; i++) torn = Crc32C.Compute(span.Slice(i * BlockSize, BlockSize)) != entries[i].Crc;
                if (torn) break;
            }
            for (var i = 0; i < count; i++) Add(file, entries[i].Block, new Copy(until, offset + (1L + i) * BlockSize, entries[i].Crc, file));
            offset += size;
        }
        if (offset < durableLength)
        {
            Damage = $"the snapshot store {file.Path} is damaged at byte {offset} (it was made durable up to {durableLength}); " +
                     "copies after that are lost, so no view of a point the destager has gone past opens (it could read later data as the point's)";
            file.Length = fileLength; // appends go after the damage, which stays for inspection
            file.Synced = fileLength;
            return;
        }
        if (offset < fileLength)
        {
            file.Handle.SetLength(offset); // a torn tail that was never made durable
            file.Handle.Sync();
        }
        else if (offset > durableLength)
            file.Handle.Sync(); // copies a killed process appended and never synced: durable before they count as such
        file.Length = offset;
        file.Synced = offset;
    }

    private bool TryReadHeader(out int count, out long until, Span<(long Block, uint Crc)> entries)
    {
        var header = _header.AsSpan();
        count = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        until = BinaryPrimitives.ReadInt64LittleEndian(header[32..]);
        if (BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic || BinaryPrimitives.ReadUInt16LittleEndian(header[8..]) != 1) return false;
        if (count is <= 0 or > MaxEntries || new Guid(header[16..32]) != _volumeId) return false;
        var stored = BinaryPrimitives.ReadUInt32LittleEndian(header[44..]);
        BinaryPrimitives.WriteUInt32LittleEndian(header[44..], 0);
        if (Crc32C.Compute(header) != stored) return false;
        for (var i = 0; i < count; i++)
        {
            var at = EntriesOffset + i * EntrySize;
            entries[i] = (BinaryPrimitives.ReadInt64LittleEndian(header[at..]), BinaryPrimitives.ReadUInt32LittleEndian(header[(at + 8)..]));
        }
        return true;
    }

    /// <summary>
    /// Adds a copy to its block's list, which stays in ascending <c>until</c> order: <see cref="TryFind"/> takes the first
    /// copy past a point and <see cref="NewestUntil"/> the last. Appends come in that order; a file compacted by a build
    /// that wrote its batches in another order is put right when it is loaded.
    /// </summary>
    private static void Add(StoreFile file, long block, Copy copy)
    {
        file.Copies.AddOrUpdate(block, [copy], (_, existing) =>
        {
            var at = existing.Length;
            while (at > 0 && existing[at - 1].Until > copy.Until) at--;
            return [.. existing.AsSpan(0, at), copy, .. existing.AsSpan(at)];
        });
        Interlocked.Increment(ref file.Blocks);
    }

    /// <summary>The <c>until</c> of the block's newest copy, or -1 when it has none.</summary>
    public long NewestUntil(long block) => _file.Copies.TryGetValue(block, out var copies) ? copies[^1].Until : -1;

    /// <summary>The copy that holds the block as it was at the sync point whose batch is <paramref name="sequence"/>: the first with a later <c>until</c>.</summary>
    public bool TryFind(long block, long sequence, out Copy copy)
    {
        copy = default;
        if (!_file.Copies.TryGetValue(block, out var copies)) return false;
        foreach (var candidate in copies)
        {
            if (candidate.Until <= sequence) continue;
            copy = candidate;
            return true;
        }
        return false;
    }

    /// <summary>Every (block, until) of copies made after the point whose batch is <paramref name="sequence"/>: the blocks the destager overwrote since.</summary>
    public IEnumerable<(long Block, long Until)> CopiesAfter(long sequence)
    {
        foreach (var (block, copies) in _file.Copies)
            foreach (var copy in copies)
                if (copy.Until > sequence) yield return (block, copy.Until);
    }

    /// <summary>Reads a preserved copy and checks it against its checksum: a damaged copy is never served.</summary>
    public static void Read(in Copy copy, long block, Span<byte> destination)
    {
        bool ok;
        try
        {
            ok = copy.File.Handle.Read(destination[..BlockSize], copy.Offset) == BlockSize && Crc32C.Compute(destination[..BlockSize]) == copy.Crc;
        }
        catch (ObjectDisposedException)
        {
            ok = false; // the store closed under the reader
        }
        if (!ok) BlockThrow.Error(BlockError.Io, $"the preserved copy of block {block} in {copy.File.Path} is damaged; the snapshots that read it cannot serve it");
    }

    /// <summary>
    /// Appends the current backing content of <paramref name="blocks"/> (<paramref name="data"/>, 4 KiB
    /// each, same order), preserved before a destage step whose last batch is <paramref name="until"/>.
    /// Not durable until <see cref="Sync()"/>; visible to lookups at once (the bytes are in the file).
    /// </summary>
    public void Append(ReadOnlySpan<long> blocks, long until, ReadOnlySpan<byte> data) => Append(_file, blocks, until, data);

    private void Append(StoreFile file, ReadOnlySpan<long> blocks, long until, ReadOnlySpan<byte> data)
    {
        Span<uint> crcs = stackalloc uint[MaxEntries];
        for (var start = 0; start < blocks.Length; start += MaxEntries)
        {
            var count = Math.Min(MaxEntries, blocks.Length - start);
            var header = _header.AsSpan();
            header.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
            BinaryPrimitives.WriteUInt16LittleEndian(header[8..], 1);
            BinaryPrimitives.WriteInt32LittleEndian(header[12..], count);
            _volumeId.TryWriteBytes(header[16..32]);
            BinaryPrimitives.WriteInt64LittleEndian(header[32..], until);
            for (var i = 0; i < count; i++)
            {
                var at = EntriesOffset + i * EntrySize;
                crcs[i] = Crc32C.Compute(data.Slice((start + i) * BlockSize, BlockSize));
                BinaryPrimitives.WriteInt64LittleEndian(header[at..], blocks[start + i]);
                BinaryPrimitives.WriteUInt32LittleEndian(header[(at + 8)..], crcs[i]);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(header[44..], Crc32C.Compute(header));
            var offset = file.Length;
            try
            {
                file.Handle.Write(header, offset);
                file.Handle.Write(data.Slice(start * BlockSize, count * BlockSize), offset + BlockSize);
            }
            catch (IOException e)
            {
                BlockThrow.Error(e.HResult == LibC.ENOSPC ? BlockError.NoSpace : BlockError.Io, $"cannot preserve blocks in {file.Path}: {e.Message}", e);
            }
            for (var i = 0; i < count; i++) Add(file, blocks[start + i], new Copy(until, offset + (1L + i) * BlockSize, crcs[i], file));
            Interlocked.Exchange(ref file.Length, offset + (1L + count) * BlockSize);
        }
    }

    /// <summary>
    /// Bytes of copies some protected point still reads: a block's copy with <c>until</c> U serves the
    /// points from its previous copy's <c>until</c> up to U - 1.
    /// </summary>
    public long LiveBytes(ProtectedPoints points)
    {
        long live = 0;
        foreach (var (_, copies) in _file.Copies)
            for (var i = 0; i < copies.Length; i++)
                if (IsLive(copies, i, points)) live += BlockSize;
        return live;
    }

    /// <summary>
    /// Bytes of copies no protected point reads: what a compaction gives back, besides headers. A store of live copies only has
    /// none, and is not rewritten in vain.
    /// </summary>
    public long DeadBytes(ProtectedPoints points) =>
        Interlocked.Read(ref _file.Blocks) * BlockSize - LiveBytes(points);

    /// <summary>
    /// For each protected point, the bytes of copies no other protected point reads: what giving the
    /// point up would free at the next compaction. Reads the copies as they are now, from any thread.
    /// </summary>
    public Dictionary<long, long> ExclusiveBytes(ProtectedPoints points)
    {
        var exclusive = new Dictionary<long, long>();
        foreach (var (_, copies) in _file.Copies)
            for (var i = 0; i < copies.Length; i++)
                if (points.OnlyIn(i == 0 ? long.MinValue : copies[i - 1].Until, copies[i].Until - 1) is { } only)
                    exclusive[only] = exclusive.GetValueOrDefault(only) + BlockSize;
        return exclusive;
    }

    private static bool IsLive(Copy[] copies, int i, ProtectedPoints points) =>
        points.AnyIn(i == 0 ? long.MinValue : copies[i - 1].Until, copies[i].Until - 1);

    /// <summary>
    /// Writes the live copies to a new file and puts it in place of the old one, so the space of copies
    /// no protected point reads any more comes back. <paramref name="saveLength"/> records the new length
    /// in the checkpoint before the new file replaces the old one (a crash in between finds the old file,
    /// longer than recorded, which is harmless). Returns the bytes given back.
    /// </summary>
    public long Compact(ProtectedPoints points, Action<long> saveLength)
    {
        var old = _file;
        var fresh = new StoreFile(old.Path, _directory.Open(NewFileName, FileMode.Create));
        var buffer = GC.AllocateUninitializedArray<byte>(MaxEntries * BlockSize);
        var blocks = new List<long>(MaxEntries);
        foreach (var group in old.Copies
                     .SelectMany(pair => pair.Value.Select((copy, i) => (Block: pair.Key, Copy: copy, Live: IsLive(pair.Value, i, points))))
                     .Where(c => c.Live)
                     // Batches in ascending until, so each block's copies stay in that order in the new file (see Add).
                     .OrderBy(c => c.Copy.Until)
                     .GroupBy(c => c.Copy.Until))
        {
            foreach (var chunk in group.Chunk(MaxEntries))
            {
                blocks.Clear();
                for (var i = 0; i < chunk.Length; i++)
                {
                    Read(chunk[i].Copy, chunk[i].Block, buffer.AsSpan(i * BlockSize, BlockSize));
                    blocks.Add(chunk[i].Block);
                }
                Append(fresh, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(blocks), group.Key, buffer.AsSpan(0, chunk.Length * BlockSize));
            }
        }
        fresh.Handle.Sync();
        fresh.Synced = fresh.Length;
        saveLength(fresh.Length);
        _directory.Replace(NewFileName, FileName);
        // Readers that looked in the old file keep reading it (its handle stays open until the store closes).
        _file = fresh;
        lock (_retired) _retired.Add(old);
        return old.Length - fresh.Length;
    }

    /// <summary>
    /// Makes every appended copy durable: the destager calls it before it overwrites the backing. When the fdatasync fails, the
    /// copies appended since the last one that succeeded are taken back (and the file cut to that length): Linux reports a
    /// write-back error once, so a later fdatasync would succeed without them on disk, and a retried step that found them
    /// preserved would overwrite the backing with nothing durable to read instead. The retry preserves them again.
    /// </summary>
    public void Sync()
    {
        var file = _file;
        var length = Interlocked.Read(ref file.Length);
        try
        {
            file.Handle.Sync();
            file.Synced = length;
        }
        catch (Exception e) when (e is IOException or BlockTargetException)
        {
            TakeBackUnsynced(file);
            throw;
        }
    }

    private static void TakeBackUnsynced(StoreFile file)
    {
        var synced = file.Synced;
        foreach (var (block, copies) in file.Copies)
        {
            var kept = Array.FindAll(copies, c => c.Offset < synced);
            if (kept.Length == copies.Length) continue;
            if (kept.Length == 0) file.Copies.TryRemove(block, out _);
            else file.Copies[block] = kept;
            Interlocked.Add(ref file.Blocks, kept.Length - copies.Length);
        }
        Interlocked.Exchange(ref file.Length, synced);
        try
        {
            file.Handle.SetLength(synced);
        }
        catch (IOException)
        {
            // The next appends overwrite what is left past the synced length; a restart checks that part in full anyway.
        }
    }

    public void Dispose()
    {
        _file.Handle.Dispose();
        lock (_retired)
            foreach (var file in _retired) file.Handle.Dispose();
    }
}
