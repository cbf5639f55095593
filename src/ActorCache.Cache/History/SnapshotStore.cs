using System.Buffers.Binary;
using System.Collections.Concurrent;
using ActorCache.Blocks;
using Microsoft.Win32.SafeHandles;

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
/// it overwrites the backing, so a copy is never lost to a crash.
/// </summary>
/// <remarks>Appended to by the destager only; looked up by views of the past from any thread (an immutable array per block, replaced on change).</remarks>
internal sealed class SnapshotStore : IDisposable
{
    public const string FileName = "preserved.store";
    private const ulong Magic = 0x3154424F57434341; // "ACCOWBT1"
    private const int BlockSize = LogFormat.BlockSize;
    private const int EntriesOffset = 64;
    private const int EntrySize = 16;
    public const int MaxEntries = (BlockSize - EntriesOffset) / EntrySize;

    private readonly SafeFileHandle _handle;
    private readonly Guid _volumeId;
    private readonly string _path;
    private readonly ConcurrentDictionary<long, Copy[]> _copies = new();
    private readonly byte[] _header = GC.AllocateArray<byte>(BlockSize, pinned: true);
    private long _length, _blocks;

    /// <summary>One preserved copy: valid for sync points before batch <see cref="Until"/>, at <see cref="Offset"/> in the file.</summary>
    public readonly record struct Copy(long Until, long Offset, uint Crc);

    private SnapshotStore(string path, SafeFileHandle handle, Guid volumeId)
    {
        _path = path;
        _handle = handle;
        _volumeId = volumeId;
    }

    /// <summary>Why part of the store could not be read when it was opened, or null.</summary>
    public string? Damage { get; private set; }

    /// <summary>Bytes the store takes.</summary>
    public long Length => Interlocked.Read(ref _length);

    /// <summary>Preserved copies held.</summary>
    public long PreservedBlocks => Interlocked.Read(ref _blocks);

    /// <summary>
    /// Opens (or creates) the store and reads every batch header. Batches from <paramref name="durableLength"/>
    /// on were written after the last checkpoint and may be torn: their data is checked too, and the first
    /// incomplete one is cut off with what follows (it was never made durable, so nothing relies on it).
    /// </summary>
    public static SnapshotStore Open(string directory, Guid volumeId, long durableLength)
    {
        var path = Path.Combine(directory, FileName);
        var handle = File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        var store = new SnapshotStore(path, handle, volumeId);
        store.Load(durableLength);
        return store;
    }

    private void Load(long durableLength)
    {
        var fileLength = RandomAccess.GetLength(_handle);
        var entries = new (long Block, uint Crc)[MaxEntries];
        var data = GC.AllocateUninitializedArray<byte>(MaxEntries * BlockSize);
        long offset = 0;
        while (offset + BlockSize <= fileLength)
        {
            if (RandomAccess.Read(_handle, _header, offset) != BlockSize || !TryReadHeader(out var count, out var until, entries)) break;
            var size = (1L + count) * BlockSize;
            if (offset + size > fileLength) break;
            if (offset >= durableLength)
            {
                var span = data.AsSpan(0, count * BlockSize);
                if (RandomAccess.Read(_handle, span, offset + BlockSize) != span.Length) break;
                var torn = false;
                for (var i = 0; i < count && !torn; i++) torn = Crc32C.Compute(span.Slice(i * BlockSize, BlockSize)) != entries[i].Crc;
                if (torn) break;
            }
            for (var i = 0; i < count; i++) Add(entries[i].Block, new Copy(until, offset + (1L + i) * BlockSize, entries[i].Crc));
            offset += size;
        }
        if (offset < durableLength)
            Damage = $"the snapshot store {_path} is damaged at byte {offset} (it was made durable up to {durableLength}); " +
                     "copies after that are lost, and the snapshots that needed them read EIO there";
        else if (offset < fileLength)
        {
            RandomAccess.SetLength(_handle, offset); // a torn tail that was never made durable
            SyncOrThrow();
        }
        _length = Math.Max(offset, Damage is null ? offset : fileLength);
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

    private void Add(long block, Copy copy)
    {
        _copies.AddOrUpdate(block, [copy], (_, existing) => [.. existing, copy]);
        Interlocked.Increment(ref _blocks);
    }

    /// <summary>The <c>until</c> of the block's newest copy, or -1 when it has none.</summary>
    public long NewestUntil(long block) => _copies.TryGetValue(block, out var copies) ? copies[^1].Until : -1;

    /// <summary>The copy that holds the block as it was at the sync point whose batch is <paramref name="sequence"/>: the first with a later <c>until</c>.</summary>
    public bool TryFind(long block, long sequence, out Copy copy)
    {
        copy = default;
        if (!_copies.TryGetValue(block, out var copies)) return false;
        foreach (var candidate in copies)
        {
            if (candidate.Until <= sequence) continue;
            copy = candidate;
            return true;
        }
        return false;
    }

    /// <summary>Reads a preserved copy and checks it against its checksum: a damaged copy is never served.</summary>
    public void Read(in Copy copy, long block, Span<byte> destination)
    {
        if (RandomAccess.Read(_handle, destination[..BlockSize], copy.Offset) != BlockSize || Crc32C.Compute(destination[..BlockSize]) != copy.Crc)
            BlockThrow.Error(BlockError.Io, $"the preserved copy of block {block} in {_path} is damaged; the snapshots that read it cannot serve it");
    }

    /// <summary>
    /// Appends the current backing content of <paramref name="blocks"/> (<paramref name="data"/>, 4 KiB
    /// each, same order), preserved before a destage step whose last batch is <paramref name="until"/>.
    /// Not durable until <see cref="Sync"/>; visible to lookups at once (the bytes are in the file).
    /// </summary>
    public void Append(ReadOnlySpan<long> blocks, long until, ReadOnlySpan<byte> data)
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
            var offset = _length;
            try
            {
                RandomAccess.Write(_handle, header, offset);
                RandomAccess.Write(_handle, data.Slice(start * BlockSize, count * BlockSize), offset + BlockSize);
            }
            catch (IOException e)
            {
                BlockThrow.Error(e.HResult == LibC.ENOSPC ? BlockError.NoSpace : BlockError.Io, $"cannot preserve blocks in {_path}: {e.Message}", e);
            }
            for (var i = 0; i < count; i++) Add(blocks[start + i], new Copy(until, offset + (1L + i) * BlockSize, crcs[i]));
            Interlocked.Exchange(ref _length, offset + (1L + count) * BlockSize);
        }
    }

    /// <summary>Makes every appended copy durable: the destager calls it before it overwrites the backing.</summary>
    public void Sync() => SyncOrThrow();

    private void SyncOrThrow()
    {
        var errno = LibC.DataSync(_handle);
        if (errno != 0) BlockThrow.FromErrno(errno, "fdatasync", _path);
    }

    public void Dispose() => _handle.Dispose();
}
