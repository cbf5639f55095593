using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace ActorCache.Blocks;

/// <summary>
/// The backing of a thin clone, like a device-mapper snapshot over an origin: blocks the clone has
/// written are in its own file, every other block reads through to the origin (a read-only view of
/// the snapshot it was cloned from). A map file records which blocks are the clone's own, one bit per
/// 4 KiB block, after a 4 KiB header:
/// <code>
/// header: magic "ACCLONE1" (8), version 1 (2), flags (2: bit 0 = independent), reserved (4),
///         blocks (8), header CRC32C with this field zero (4); a second copy at byte 2048
/// </code>
/// The header changes once (when the clone becomes independent, with every bit durable already): the
/// copy at 2048 is written and synced first, then the one at 0, so a torn write leaves one valid copy,
/// and a valid copy saying independent is the truth.
/// Bits only ever go from 0 to 1, and a bit is made durable only after the data it vouches for (FLUSH
/// syncs the file first, then writes the map pages as they were before that sync), so after a crash
/// a block reads either the clone's data or the origin's, never a block that was not written. A
/// partial write of a block still read from the origin first copies the rest of it from there.
/// </summary>
/// <remarks>
/// Writes and the background copy take one gate (the clone's destager is a single writer anyway);
/// reads take none: a bit is set only after its block is in the file.
/// </remarks>
public sealed class CloneBacking : IBlockTarget
{
    public const string MapSuffix = ".clone-map";
    private const int BlockSize = 4096;
    private const int BlockShift = 12;
    private const int HeaderBytes = 4096;
    private const int HeaderCopyBytes = 2048;
    private const int PageBytes = 4096;
    private const int BlocksPerPage = PageBytes * 8;
    private const ushort Version = 1;
    private const ushort IndependentFlag = 1;
    private static ReadOnlySpan<byte> Magic => "ACCLONE1"u8;

    private readonly IBlockTarget _own;
    private readonly SafeFileHandle _map;
    private readonly string _mapPath;
    private readonly ulong[] _bits;
    private readonly long _blocks;
    private readonly SemaphoreSlim _writes = new(1, 1);
    private readonly SemaphoreSlim _flushes = new(1, 1); // one FLUSH at a time: an older map page never lands over a newer one
    private readonly CancellationTokenSource _closing = new();
    private readonly Lock _mapGate = new(); // bits and the set of map pages not yet durable
    private readonly HashSet<long> _dirtyPages = [];
    private IBlockTarget? _origin;
    private int _originReaders;
    private long _ownBlocks;

    private CloneBacking(IBlockTarget own, IBlockTarget? origin, SafeFileHandle map, string mapPath, ulong[] bits, long blocks)
    {
        _own = own;
        _origin = origin;
        _map = map;
        _mapPath = mapPath;
        _bits = bits;
        _blocks = blocks;
        for (long b = 0; b < blocks; b++)
            if (IsOwn(b)) _ownBlocks++;
    }

    /// <summary>Whether the map at <paramref name="mapPath"/> says the clone no longer needs its origin (false when there is no map yet).</summary>
    public static bool IsIndependent(string mapPath)
    {
        if (!File.Exists(mapPath)) return false;
        using var handle = File.OpenHandle(mapPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var header = new byte[HeaderBytes];
        // A map shorter than its header was never initialised: a new, dependent clone.
        return RandomAccess.Read(handle, header, 0) == HeaderBytes && (ReadHeader(header, mapPath, out _) & IndependentFlag) != 0;
    }

    /// <summary>
    /// Opens the clone over its file <paramref name="own"/> and <paramref name="origin"/> (null for an
    /// independent clone), creating an empty map the first time.
    /// </summary>
    public static CloneBacking Open(IBlockTarget own, IBlockTarget? origin, string mapPath)
    {
        var blocks = own.Size >> BlockShift;
        var bits = new ulong[(blocks + 63) / 64];
        // A map shorter than its header was cut short by a crash while it was being created: nothing relies on it.
        var exists = File.Exists(mapPath) && new FileInfo(mapPath).Length >= HeaderBytes;
        var map = File.OpenHandle(mapPath, exists ? FileMode.Open : FileMode.Create, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            var header = new byte[HeaderBytes];
            if (!exists)
            {
                WriteHeader(header, blocks, 0);
                WriteHeader(header.AsSpan(HeaderCopyBytes), blocks, 0);
                RandomAccess.Write(map, header, 0);
                RandomAccess.SetLength(map, HeaderBytes + (blocks + BlocksPerPage - 1) / BlocksPerPage * PageBytes);
                Sync(map, mapPath);
                var directoryErrno = LibC.SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(mapPath))!);
                if (directoryErrno != 0) BlockThrow.FromErrno(directoryErrno, "fsync", mapPath);
            }
            else
            {
                if (RandomAccess.Read(map, header, 0) != HeaderBytes) BlockThrow.Error(BlockError.Io, $"clone map {mapPath} is shorter than its header");
                var flags = ReadHeader(header, mapPath, out var recorded);
                if (recorded != blocks)
                    BlockThrow.Error(BlockError.InvalidRequest, $"clone map {mapPath} is for {recorded} blocks, the clone has {blocks}");
                if ((flags & IndependentFlag) == 0 && origin is null)
                    BlockThrow.Error(BlockError.InvalidRequest, $"clone map {mapPath}: the clone still reads through to its snapshot, which is not available");
                var bytes = new byte[bits.Length * sizeof(ulong)];
                RandomAccess.Read(map, bytes.AsSpan(0, (int)Math.Min(bytes.Length, (blocks + 7) / 8)), HeaderBytes);
                for (var i = 0; i < bits.Length; i++) bits[i] = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(i * 8));
            }
            return new CloneBacking(own, origin, map, mapPath, bits, blocks);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    public long Size => _own.Size;

    /// <summary>The own file's capabilities, without allocation status (a hole may be a block still read from the origin).</summary>
    public TargetCapabilities Capabilities => _own.Capabilities & ~TargetCapabilities.Allocation;

    /// <summary>Still reads through to its origin.</summary>
    public bool HasOrigin => Volatile.Read(ref _origin) is not null;

    /// <summary>Blocks that are the clone's own (written, or copied from the origin).</summary>
    public long OwnBlocks => Interlocked.Read(ref _ownBlocks);

    public long Blocks => _blocks;

    // ---- reads --------------------------------------------------------------------------------

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _originReaders);
        try
        {
            var origin = Volatile.Read(ref _origin);
            var end = offset + destination.Length;
            while (offset < end)
            {
                var own = origin is null || IsOwn(offset >> BlockShift);
                var runEnd = Math.Min(end, ((offset >> BlockShift) + 1) << BlockShift);
                while (runEnd < end && (origin is null || IsOwn(runEnd >> BlockShift)) == own) runEnd = Math.Min(end, runEnd + BlockSize);
                var part = destination[..(int)(runEnd - offset)];
                await (own ? _own : origin!).ReadAsync(offset, part, cancellationToken).ConfigureAwait(false);
                destination = destination[part.Length..];
                offset = runEnd;
            }
        }
        finally
        {
            Interlocked.Decrement(ref _originReaders);
        }
    }

    // ---- writes -------------------------------------------------------------------------------

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        await _writes.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await WriteOwnAsync(offset, data, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _writes.Release();
        }
        if (fua) await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) =>
        WriteZeroesAsync(offset, length, mayDeallocate: true, fastOnly: false, fua, cancellationToken);

    public async ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default)
    {
        await _writes.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Whole blocks become the clone's own zeroes; a partial block at either end is a write of zero bytes.
            var first = (offset + BlockSize - 1) & ~(long)(BlockSize - 1);
            var last = (offset + length) & ~(long)(BlockSize - 1);
            if (first >= last)
            {
                await WriteOwnAsync(offset, new byte[length], cancellationToken).ConfigureAwait(false);
            }
            else
            {
                if (first > offset) await WriteOwnAsync(offset, new byte[first - offset], cancellationToken).ConfigureAwait(false);
                await _own.WriteZeroesAsync(first, last - first, mayDeallocate, fastOnly, fua: false, cancellationToken).ConfigureAwait(false);
                MarkOwn(first >> BlockShift, (last - first) >> BlockShift);
                if (offset + length > last) await WriteOwnAsync(last, new byte[offset + length - last], cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _writes.Release();
        }
        if (fua) await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes into the own file (the gate held); a partial block still read from the origin is completed from there first.</summary>
    private async ValueTask WriteOwnAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        var start = offset & ~(long)(BlockSize - 1);
        var end = (offset + data.Length + BlockSize - 1) & ~(long)(BlockSize - 1);
        var headPartial = offset != start && !IsOwn(start >> BlockShift);
        var tailPartial = offset + data.Length != end && !IsOwn((end >> BlockShift) - 1);
        if (headPartial || tailPartial)
        {
            // Rare (the cache above destages whole blocks): read the whole blocks as they read now, lay the data over them.
            var whole = new byte[end - start];
            await ReadAsync(start, whole, cancellationToken).ConfigureAwait(false);
            data.Span.CopyTo(whole.AsSpan((int)(offset - start)));
            (offset, data) = (start, whole);
        }
        await _own.WriteAsync(offset, data, fua: false, cancellationToken).ConfigureAwait(false);
        // Only blocks wholly written, or already the clone's own, are its own now.
        var firstWhole = (offset + BlockSize - 1) >> BlockShift;
        var lastWhole = (offset + data.Length) >> BlockShift;
        if (lastWhole > firstWhole) MarkOwn(firstWhole, lastWhole - firstWhole);
    }

    // ---- the origin ---------------------------------------------------------------------------

    /// <summary>
    /// Copies every block the clone still reads from its origin into its own file, reporting blocks
    /// done of <see cref="Blocks"/>; then records durably that the clone is independent and lets the
    /// origin go. Writes go on meanwhile (a block written during the copy is not overwritten).
    /// </summary>
    public async Task MakeIndependentAsync(Action<long, long> progress, CancellationToken cancellationToken)
    {
        // Closing the clone stops the copy; it starts over from the bits when asked again.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closing.Token);
        cancellationToken = linked.Token;
        const int ChunkBlocks = 256;
        var origin = Volatile.Read(ref _origin);
        if (origin is null) return;
        var buffer = GC.AllocateUninitializedArray<byte>(ChunkBlocks * BlockSize);
        for (long block = 0; block < _blocks; block += ChunkBlocks)
        {
            var count = (int)Math.Min(ChunkBlocks, _blocks - block);
            if (Enumerable.Range(0, count).Any(i => !IsOwn(block + i)))
            {
                await origin.ReadAsync(block << BlockShift, buffer.AsMemory(0, count * BlockSize), cancellationToken).ConfigureAwait(false);
                await _writes.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    // Runs of blocks still not the clone's own: a write that came in meanwhile wins.
                    for (var i = 0; i < count;)
                    {
                        if (IsOwn(block + i))
                        {
                            i++;
                            continue;
                        }
                        var run = 1;
                        while (i + run < count && !IsOwn(block + i + run)) run++;
                        var data = buffer.AsMemory(i * BlockSize, run * BlockSize);
                        // Zeroes (most of a fresh volume) cost no data: a hole where the file can punch one.
                        if (data.Span.IndexOfAnyExcept((byte)0) < 0)
                            await _own.WriteZeroesAsync((block + i) << BlockShift, data.Length, mayDeallocate: true, fastOnly: false, fua: false, cancellationToken)
                                .ConfigureAwait(false);
                        else
                            await _own.WriteAsync((block + i) << BlockShift, data, fua: false, cancellationToken).ConfigureAwait(false);
                        MarkOwn(block + i, run);
                        i += run;
                    }
                }
                finally
                {
                    _writes.Release();
                }
            }
            progress(block + count, _blocks);
        }
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        var header = new byte[HeaderCopyBytes];
        WriteHeader(header, _blocks, IndependentFlag);
        RandomAccess.Write(_map, header, HeaderCopyBytes);
        Sync(_map, _mapPath);
        RandomAccess.Write(_map, header, 0);
        Sync(_map, _mapPath);
        await ReleaseOriginAsync().ConfigureAwait(false);
    }

    /// <summary>Lets the origin go once no read uses it any more.</summary>
    private async Task ReleaseOriginAsync()
    {
        // The exchange is a full fence: a reader that counted itself in before it sees the origin's
        // replacement is waited for; one that counts itself in after sees null (every bit is set by then).
        if (Interlocked.Exchange(ref _origin, null) is not { } origin) return;
        while (Volatile.Read(ref _originReaders) > 0) await Task.Delay(1, CancellationToken.None).ConfigureAwait(false);
        await origin.DisposeAsync().ConfigureAwait(false);
    }

    // ---- durability ---------------------------------------------------------------------------

    public async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        await _flushes.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await FlushMapAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _flushes.Release();
        }
    }

    private async ValueTask FlushMapAsync(CancellationToken cancellationToken)
    {
        // The map pages as they are now vouch only for data written before this FLUSH: sync that data, then them.
        var pages = new List<(long Page, byte[] Bytes)>();
        lock (_mapGate)
        {
            foreach (var page in _dirtyPages) pages.Add((page, PageBytesOf(page)));
            _dirtyPages.Clear();
        }
        try
        {
            await _own.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (pages.Count == 0) return;
            foreach (var (page, bytes) in pages) RandomAccess.Write(_map, bytes, HeaderBytes + page * PageBytes);
            Sync(_map, _mapPath);
        }
        catch
        {
            lock (_mapGate) foreach (var (page, _) in pages) _dirtyPages.Add(page); // written again by the next FLUSH
            throw;
        }
    }

    public ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents, CancellationToken cancellationToken = default)
    {
        extents.Span[0] = new AllocationExtent(length, AllocationState.Data);
        return ValueTask.FromResult(1);
    }

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public async ValueTask<bool> TrySendAsync(TargetMessage message, CancellationToken cancellationToken = default)
    {
        switch (message)
        {
            case MakeIndependent independent:
                await MakeIndependentAsync(independent.Progress, cancellationToken).ConfigureAwait(false);
                return true;
            case GrowTarget:
                throw new BlockTargetException(BlockError.NotSupported, "a clone does not grow; copy it into a larger volume instead");
            default:
                return await _own.TrySendAsync(message, cancellationToken).ConfigureAwait(false);
        }
    }

    public void CollectStatus(TargetStatus status)
    {
        status.Add(new CloneStatus(HasOrigin, OwnBlocks, _blocks));
        _own.CollectStatus(status);
    }

    public async ValueTask DisposeAsync()
    {
        _closing.Cancel();
        await _writes.WaitAsync().ConfigureAwait(false); // a copy under way has stopped writing
        try
        {
            await FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            _map.Dispose();
            await _own.DisposeAsync().ConfigureAwait(false);
            await ReleaseOriginAsync().ConfigureAwait(false);
            _closing.Dispose();
        }
    }

    // ---- the map ------------------------------------------------------------------------------

    private bool IsOwn(long block) => (Volatile.Read(ref _bits[block >> 6]) & (1UL << (int)(block & 63))) != 0;

    private void MarkOwn(long first, long count)
    {
        lock (_mapGate)
        {
            for (var block = first; block < first + count; block++)
            {
                ref var word = ref _bits[block >> 6];
                var bit = 1UL << (int)(block & 63);
                if ((word & bit) != 0) continue;
                Volatile.Write(ref word, word | bit);
                _ownBlocks++;
                _dirtyPages.Add(block / BlocksPerPage);
            }
        }
    }

    private byte[] PageBytesOf(long page)
    {
        var bytes = new byte[PageBytes];
        var firstWord = page * (BlocksPerPage / 64);
        for (var i = 0; i < PageBytes / 8 && firstWord + i < _bits.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), _bits[firstWord + i]);
        return bytes;
    }

    private static void WriteHeader(Span<byte> header, long blocks, ushort flags)
    {
        header = header[..HeaderCopyBytes];
        header.Clear();
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt16LittleEndian(header[8..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(header[10..], flags);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], blocks);
        BinaryPrimitives.WriteUInt32LittleEndian(header[24..], Crc32C.Compute(header));
    }

    /// <summary>The flags and block count of the valid header copies (independent if either says so); damaged only if both are.</summary>
    private static ushort ReadHeader(ReadOnlySpan<byte> header, string path, out long blocks)
    {
        var first = TryReadCopy(header[..HeaderCopyBytes], out var firstBlocks);
        var second = TryReadCopy(header[HeaderCopyBytes..HeaderBytes], out var secondBlocks);
        if (first is null && second is null) BlockThrow.Error(BlockError.Io, $"clone map {path} has a damaged header (both copies)");
        blocks = first is not null ? firstBlocks : secondBlocks;
        var flags = (ushort)((first ?? 0) | (second ?? 0));
        return flags;
    }

    private static ushort? TryReadCopy(ReadOnlySpan<byte> header, out long blocks)
    {
        blocks = 0;
        var copy = header.ToArray();
        var crc = BinaryPrimitives.ReadUInt32LittleEndian(copy.AsSpan(24));
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(24), 0);
        if (!copy.AsSpan(0, 8).SequenceEqual(Magic) || Crc32C.Compute(copy) != crc || BinaryPrimitives.ReadUInt16LittleEndian(header[8..]) != Version)
            return null;
        blocks = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        return BinaryPrimitives.ReadUInt16LittleEndian(header[10..]);
    }

    private static void Sync(SafeFileHandle handle, string path)
    {
        var errno = LibC.DataSync(handle);
        if (errno != 0) BlockThrow.FromErrno(errno, "fdatasync", path);
    }
}

/// <summary>A clone's status: whether it still reads through to its snapshot, and how many blocks are its own.</summary>
public sealed record CloneStatus(bool ReadsThroughOrigin, long OwnBlocks, long Blocks);

/// <summary>Asks a clone's backing to copy what it still reads from its snapshot and let the snapshot go (see <see cref="CloneBacking.MakeIndependentAsync"/>).</summary>
public sealed record MakeIndependent(Action<long, long> Progress) : TargetMessage;
