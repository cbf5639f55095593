using System.Buffers;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// Reads a volume through an index: the live one, or one built for an older generation. Every block
/// comes from where its entry says (a ring slot, the log, a logged zero, or the backing); a ring slot is
/// pinned and the entry checked again before copying, and a log read that races with segment release
/// looks the block up again. The one place that turns an index entry into bytes. A log block in a record
/// the <see cref="LogScrub"/> has not verified yet is verified first, and one in a damaged record is refused.
/// </summary>
internal sealed class CacheReader(RingBuffer ring, ILogMedium medium, IBlockTarget backing, LogDamage damage, LogScrub scrub, string volume)
{
    private const int BlockSize = LogFormat.BlockSize;
    private const int BlockShift = LogFormat.BlockShift;
    private const int MaxReadRunBlocks = 256; // 1 MiB per log read

    public async ValueTask ReadAsync(BlockIndex index, long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var end = offset + destination.Length;
        var position = offset;
        while (position < end)
        {
            var (block, within, entry, location, length) = PieceAt(index, position, end);
            if (location == BlockLocation.Backing)
            {
                damage.ThrowIfDamaged(block, entry, volume);
                await backing.ReadAsync(position, destination.Slice((int)(position - offset), length), cancellationToken).ConfigureAwait(false);
                position += length;
                continue;
            }
            if (location == BlockLocation.Log && within == 0 && end - position >= 2 * BlockSize)
            {
                // A run of blocks whose newest versions sit next to each other in the log (one write,
                // one batch) is one pread, not one per block: sequential reads of logged data.
                var logBlock = BlockIndex.ValueOf(entry);
                var maxRun = (int)Math.Min((end - position) >> BlockShift, MaxReadRunBlocks);
                var run = 1;
                while (run < maxRun && index.Get(block + run) == BlockIndex.Encode(BlockLocation.Log, logBlock + run)) run++;
                if (run > 1)
                {
                    scrub.VerifyThrough(logBlock + run - 1);
                    for (var b = 0; b < run; b++) damage.ThrowIfDamaged(block + b, BlockIndex.Encode(BlockLocation.Log, logBlock + b), volume);
                    if (!medium.TryRead(logBlock << BlockShift, destination.Span.Slice((int)(position - offset), run << BlockShift))) continue;
                    if (!StillLogged(index, block, logBlock, run)) continue; // destaged and its segment reused meanwhile: look again
                    position += (long)run << BlockShift;
                    continue;
                }
            }
            if (!TryCopy(index, block, entry, within, destination.Span.Slice((int)(position - offset), length))) continue; // moved: look again
            position += length;
        }
    }

    /// <summary>
    /// The read path without any wait: ring and logged zeroes from memory, log and backing only from the
    /// page cache. False (with the destination in any state) when some part needs the disk or the index
    /// moved under us; the caller then reads with <see cref="ReadAsync"/>.
    /// </summary>
    public bool TryReadWithoutWaiting(BlockIndex index, long offset, Span<byte> destination)
    {
        if (damage.Any) return false; // damaged blocks are checked on the slow path
        var end = offset + destination.Length;
        var position = offset;
        var moves = 0;
        while (position < end)
        {
            var (block, within, entry, location, length) = PieceAt(index, position, end);
            var target = destination.Slice((int)(position - offset), length);
            if (location == BlockLocation.Backing)
            {
                if (!backing.TryReadWithoutWaiting(position, target)) return false;
                position += length;
                continue;
            }
            if (location == BlockLocation.Log)
            {
                if (scrub.Pending(BlockIndex.ValueOf(entry))) return false; // verified first, on the slow path
                if (!medium.TryReadWithoutWaiting((BlockIndex.ValueOf(entry) << BlockShift) + within, target) || index.Get(block) != entry) return false;
            }
            else if (!TryCopy(index, block, entry, within, target))
            {
                // The block just moved (its slot went to the log): look it up again, a few times at most.
                if (++moves > 4) return false;
                continue;
            }
            position += length;
        }
        return true;
    }

    /// <summary>
    /// One whole block's current content, read synchronously: a partial-block write merges with it under
    /// the append lock, where no write of the block can come in between. Backing reads are plain preads.
    /// </summary>
    public void ReadBlock(BlockIndex index, long block, Span<byte> destination)
    {
        // A block moves (ring -> log -> backing) at most a few times while we look; an entry that keeps
        // naming a free slot would be a broken index, reported rather than looped on.
        for (var attempt = 0; attempt < 1000; attempt++)
        {
            var entry = index.Get(block);
            if (BlockIndex.LocationOf(entry) != BlockLocation.Backing)
            {
                if (TryCopy(index, block, entry, 0, destination)) return;
                continue;
            }
            var buffer = ArrayPool<byte>.Shared.Rent(BlockSize);
            try
            {
                var read = backing.ReadAsync(block << BlockShift, buffer.AsMemory(0, BlockSize));
                if (!read.IsCompletedSuccessfully) read.AsTask().GetAwaiter().GetResult(); // a file backing reads synchronously anyway
                buffer.AsSpan(0, BlockSize).CopyTo(destination);
                return;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
        throw new InvalidOperationException($"volume {volume}: the index entry of block {block} keeps naming a location that is gone");
    }

    /// <summary>Copies part of a cached block; false when the entry changed under us (flushed, destaged, rewritten).</summary>
    private bool TryCopy(BlockIndex index, long block, ulong entry, int within, Span<byte> target)
    {
        switch (BlockIndex.LocationOf(entry))
        {
            case BlockLocation.Zero:
                target.Clear();
                return true;
            case BlockLocation.Ring:
            {
                var slot = (int)BlockIndex.ValueOf(entry);
                if (!ring.TryAddReference(slot)) return false;
                try
                {
                    if (index.Get(block) != entry) return false;
                    ring.Slot(slot).Slice(within, target.Length).CopyTo(target);
                    return true;
                }
                finally
                {
                    ring.Release(slot);
                }
            }
            case BlockLocation.Log:
                scrub.VerifyThrough(BlockIndex.ValueOf(entry));
                damage.ThrowIfDamaged(block, entry, volume);
                // Checked again after the read: a block destaged meanwhile may have had its segment released
                // and reused for newer records while the pread ran (the index changes before the release).
                return medium.TryRead((BlockIndex.ValueOf(entry) << BlockShift) + within, target) && index.Get(block) == entry;
            default:
                return false;
        }
    }

    private static bool StillLogged(BlockIndex index, long block, long logBlock, int run)
    {
        for (var b = 0; b < run; b++)
            if (index.Get(block + b) != BlockIndex.Encode(BlockLocation.Log, logBlock + b)) return false;
        return true;
    }

    /// <summary>
    /// What to read next from <paramref name="position"/>: the rest of one cached block, or a run of
    /// blocks that are all on the backing (read as one I/O), up to <paramref name="end"/>.
    /// </summary>
    private static Piece PieceAt(BlockIndex index, long position, long end)
    {
        var block = position >> BlockShift;
        var entry = index.Get(block);
        var location = BlockIndex.LocationOf(entry);
        var pieceEnd = Math.Min(end, (block + 1) << BlockShift);
        if (location == BlockLocation.Backing)
            while (pieceEnd < end && index.Get(pieceEnd >> BlockShift) == 0) pieceEnd = Math.Min(end, pieceEnd + BlockSize);
        return new Piece(block, (int)(position & (BlockSize - 1)), entry, location, (int)(pieceEnd - position));
    }

    private readonly record struct Piece(long Block, int Within, ulong Entry, BlockLocation Location, int Length);

    /// <summary>Allocation status (NBD base:allocation): uncached runs as the backing says (holes stay holes), cached blocks as data, or zero for logged trims.</summary>
    public async ValueTask<int> GetAllocationAsync(BlockIndex index, long offset, long length, Memory<AllocationExtent> extents,
        CancellationToken cancellationToken)
    {
        var count = 0;
        var position = offset;
        var end = Math.Min(offset + length, index.Blocks << BlockShift);
        while (position < end && count < extents.Length)
        {
            var block = position >> BlockShift;
            var lastBlock = (end - 1) >> BlockShift;
            var cached = index.NextCached(block, lastBlock + 1);
            if (cached > block)
            {
                var runEnd = Math.Min(end, cached << BlockShift);
                var n = await backing.GetAllocationAsync(position, runEnd - position, extents[count..], cancellationToken).ConfigureAwait(false);
                var covered = 0L;
                for (var i = 0; i < n; i++) covered += extents.Span[count + i].Length;
                count = Merge(extents.Span, count, n);
                position += covered;
                if (covered == 0) break;
                continue;
            }
            var zero = BlockIndex.LocationOf(index.Get(block)) == BlockLocation.Zero;
            var stop = block + 1;
            while (stop <= lastBlock && index.Get(stop) != 0 && (BlockIndex.LocationOf(index.Get(stop)) == BlockLocation.Zero) == zero) stop++;
            var runLength = Math.Min(end, stop << BlockShift) - position;
            extents.Span[count] = new AllocationExtent(runLength, zero ? AllocationState.Zero : AllocationState.Data);
            count = Merge(extents.Span, count, 1);
            position += runLength;
        }
        return Math.Max(count, 0);
    }

    /// <summary>Joins the <paramref name="added"/> extents after <paramref name="count"/> with their predecessor when the states match.</summary>
    private static int Merge(Span<AllocationExtent> extents, int count, int added)
    {
        var end = count + added;
        for (var i = count; i < end; i++)
        {
            if (count > 0 && extents[count - 1].State == extents[i].State)
                extents[count - 1] = extents[count - 1] with { Length = extents[count - 1].Length + extents[i].Length };
            else
                extents[count++] = extents[i];
        }
        return count;
    }
}
