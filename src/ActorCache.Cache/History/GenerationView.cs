using System.Buffers;
using ActorCache.Blocks;

namespace ActorCache.Cache;

/// <summary>
/// The volume as it was at one sync point, read-only (DESIGN §3: any generation in the retention window
/// = backing + log records up to it). Each block comes from the first place that has it: a copy the
/// destager preserved before overwriting the backing, the log records up to the point (the index built
/// when the view opened), or the backing. The point stays protected while the view is open, so the
/// destager never overwrites what the view reads without preserving it first.
/// </summary>
/// <remarks>
/// A backing read races with the destager's copy-on-write, which makes the copy visible before it
/// overwrites the backing: so a block read from the backing is looked up again afterwards, and read from
/// its copy if one appeared meanwhile. A log block whose segment has gone (destaged meanwhile, never past
/// the point) is on the backing.
/// </remarks>
public sealed class GenerationView : IBlockTarget
{
    private const int BlockSize = LogFormat.BlockSize;
    private const int BlockShift = LogFormat.BlockShift;

    private readonly BlockIndex _index;
    private readonly ILogMedium _medium;
    private readonly IBlockTarget _backing;
    private readonly SnapshotStore _store;
    private readonly LogWindow _window;
    private readonly Action _release;
    private readonly LogScrub _scrub;
    private readonly LogDamage _damage;
    private int _released;

    internal GenerationView(string volume, SyncPoint point, BlockIndex index, ILogMedium medium, IBlockTarget backing, SnapshotStore store,
        LogWindow window, Action release, LogScrub scrub, LogDamage damage)
    {
        _scrub = scrub;
        _damage = damage;
        _window = window;
        Volume = volume;
        Point = point;
        _index = index;
        _medium = medium;
        _backing = backing;
        _store = store;
        _release = release;
    }

    public string Volume { get; }

    /// <summary>The sync point this view shows.</summary>
    public SyncPoint Point { get; }

    public long Size => _index.Blocks << BlockShift;

    public TargetCapabilities Capabilities => TargetCapabilities.ReadOnly | (_backing.Capabilities & TargetCapabilities.Allocation);

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var position = offset;
        var end = offset + destination.Length;
        while (position < end)
        {
            var block = position >> BlockShift;
            var within = (int)(position & (BlockSize - 1));
            var take = (int)Math.Min(BlockSize - within, end - position);
            var target = destination.Slice((int)(position - offset), take);
            if (!ReadFromCopyOrLog(block, within, target.Span))
            {
                // On the backing: a run of such blocks is one read, then each is checked for a copy made meanwhile.
                var runEnd = Math.Min(end, (block + 1) << BlockShift);
                while (runEnd < end && OnBacking(runEnd >> BlockShift)) runEnd = Math.Min(end, runEnd + BlockSize);
                var run = destination.Slice((int)(position - offset), (int)(runEnd - position));
                await _backing.ReadAsync(position, run, cancellationToken).ConfigureAwait(false);
                RereadPreservedSince(position, run.Span);
                position = runEnd;
                continue;
            }
            position += take;
        }
    }

    /// <summary>The reads a front can answer on its receive loop: copies, logged zeroes, and log and backing from the page cache only.</summary>
    public bool TryReadWithoutWaiting(long offset, Span<byte> destination)
    {
        var position = offset;
        var end = offset + destination.Length;
        while (position < end)
        {
            var block = position >> BlockShift;
            var within = (int)(position & (BlockSize - 1));
            var take = (int)Math.Min(BlockSize - within, end - position);
            var target = destination.Slice((int)(position - offset), take);
            if (_store.TryFind(block, Point.Sequence, out _)) return false; // copies are read with their checksum, on the slow path
            var entry = _index.Get(block);
            switch (BlockIndex.LocationOf(entry))
            {
                case BlockLocation.Zero:
                    target.Clear();
                    break;
                case BlockLocation.Log:
                    if (_scrub.Pending(BlockIndex.ValueOf(entry)) || _damage.Any) return false; // verified or refused on the slow path
                    if (!_medium.TryReadWithoutWaiting((BlockIndex.ValueOf(entry) << BlockShift) + within, target) || !StillInLog(entry)) return false;
                    break;
                default:
                    if (!_backing.TryReadWithoutWaiting(position, target)) return false;
                    if (_store.TryFind(block, Point.Sequence, out _)) return false;
                    break;
            }
            position += take;
        }
        return true;
    }

    /// <summary>Fills <paramref name="target"/> from a preserved copy, a logged zero or the log; false when the block is on the backing.</summary>
    private bool ReadFromCopyOrLog(long block, int within, Span<byte> target)
    {
        if (_store.TryFind(block, Point.Sequence, out var copy))
        {
            ReadCopy(copy, block, within, target);
            return true;
        }
        var entry = _index.Get(block);
        switch (BlockIndex.LocationOf(entry))
        {
            case BlockLocation.Zero:
                target.Clear();
                return true;
            case BlockLocation.Log:
                _scrub.VerifyThrough(BlockIndex.ValueOf(entry));
                if (_damage.InCorruptRecord(BlockIndex.ValueOf(entry)))
                    BlockThrow.Error(BlockError.Io, $"volume {Volume}: block {block} at generation {Point.Generation} is in a corrupt log record and is not served: {_damage.Reason}");
                // Gone (or destaged while the pread ran, its segment possibly reused): on the backing now.
                return _medium.TryRead((BlockIndex.ValueOf(entry) << BlockShift) + within, target) && StillInLog(entry);
            default:
                return false;
        }
    }

    /// <summary>True while the log record is ahead of the horizon: its segment cannot have been released and reused.</summary>
    private bool StillInLog(ulong entry) => BlockIndex.ValueOf(entry) << BlockShift >= _window.Horizon;

    private bool OnBacking(long block) =>
        BlockIndex.LocationOf(_index.Get(block)) == BlockLocation.Backing && !_store.TryFind(block, Point.Sequence, out _);

    /// <summary>After a backing read: any block of it preserved meanwhile is read from its copy (the backing may hold a newer version now).</summary>
    private void RereadPreservedSince(long offset, Span<byte> read)
    {
        var end = offset + read.Length;
        for (var block = offset >> BlockShift; block << BlockShift < end; block++)
        {
            if (!_store.TryFind(block, Point.Sequence, out var copy)) continue;
            var from = Math.Max(offset, block << BlockShift);
            var to = Math.Min(end, (block + 1) << BlockShift);
            ReadCopy(copy, block, (int)(from - (block << BlockShift)), read.Slice((int)(from - offset), (int)(to - from)));
        }
    }

    private void ReadCopy(in SnapshotStore.Copy copy, long block, int within, Span<byte> target)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(BlockSize);
        try
        {
            SnapshotStore.Read(copy, block, buffer);
            buffer.AsSpan(within, target.Length).CopyTo(target);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Allocation as of the point: logged zeroes are zero, logged and preserved blocks data, the rest as the backing says.</summary>
    public async ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents, CancellationToken cancellationToken = default)
    {
        var count = 0;
        var position = offset;
        var end = Math.Min(offset + length, Size);
        while (position < end && count < extents.Length)
        {
            var block = position >> BlockShift;
            var known = Known(block);
            var stop = block + 1;
            while (stop << BlockShift < end && Known(stop) == known) stop++;
            var runEnd = Math.Min(end, stop << BlockShift);
            if (known is null)
            {
                var n = await _backing.GetAllocationAsync(position, runEnd - position, extents[count..], cancellationToken).ConfigureAwait(false);
                var covered = 0L;
                for (var i = 0; i < n; i++) covered += extents.Span[count + i].Length;
                count += n;
                if (covered == 0) break;
                position += covered;
                continue;
            }
            extents.Span[count++] = new AllocationExtent(runEnd - position, known.Value);
            position = runEnd;
        }
        return count;
    }

    /// <summary>What the point's own records say of a block (data or zero), or null when the backing decides.</summary>
    private AllocationState? Known(long block)
    {
        if (_store.TryFind(block, Point.Sequence, out _)) return AllocationState.Data;
        return BlockIndex.LocationOf(_index.Get(block)) switch
        {
            BlockLocation.Zero => AllocationState.Zero,
            BlockLocation.Log => AllocationState.Data,
            _ => null,
        };
    }

    public ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask FlushAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default) => throw ReadOnly();

    public ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default) => throw ReadOnly();

    public ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua, CancellationToken cancellationToken = default) =>
        throw ReadOnly();

    private BlockTargetException ReadOnly() =>
        new(BlockError.ReadOnly, $"volume {Volume} as of generation {Point.Generation} ({Point.Time:u}) is read-only");

    /// <summary>Closing the view lets the destager move past its point (unless a kept snapshot still protects it).</summary>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _release();
        return ValueTask.CompletedTask;
    }
}
