using ActorCache.Blocks;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// Destaging, in steps run by <see cref="DestagerActor"/>: plan a step of log history older than the
/// retention window (the newest version of each block in it, grouped by extent), let each extent's
/// actor write its blocks to the backing in block order, fdatasync the backing, let the extent actors
/// point their index entries at the backing, then advance the horizon (checkpoint) and free log
/// segments. The backing therefore always holds the volume as of the oldest retained generation.
/// </summary>
public sealed partial class WriteBackCache
{
    private const int DestageChunkBlocks = 256; // 1 MiB per backing write at most
    private const int DestageStepBlocks = 16384; // 64 MiB of history per step

    internal const int DestageBufferBytes = DestageChunkBlocks * BlockSize;

    private IActorRef _destagerActor = ActorRefs.Nobody;
    private int _destagerWakeSent;
    private volatile bool _destagerGone;
    private LogReader? _destageReader;
    private long _horizon, _horizonSequence, _horizonGeneration, _drainTo;
    private volatile string? _backingFailure;
    private bool _shrinkReported;
    private DateTime _nextPacedStep;
    private long _notDueAddress = -1, _notDueTime; // the batch at the horizon, last read and not due yet

    internal CacheOptions Options => _options;

    private void WakeDestager()
    {
        if (Interlocked.Exchange(ref _destagerWakeSent, 1) == 0) _destagerActor.Tell(Signals.Wake.Instance);
    }

    /// <summary>False while stopping, and for a damaged log, which is left as it is for inspection.</summary>
    internal bool DestagingAllowed => !_stopping && _readOnlyReason is null;

    internal void OnDestagerStopped() => _destagerGone = true;

    /// <summary>Reads the next step of due history; null when nothing is due. Run by the destager actor only.</summary>
    internal DestagePlan? PlanDestageStep()
    {
        Interlocked.Exchange(ref _destagerWakeSent, 0);
        var reader = _destageReader ??= new LogReader(_medium, _volumeId);
        var durableTail = Interlocked.Read(ref _durableTail);
        var address = Interlocked.Read(ref _horizon);
        var sequence = _horizonSequence;
        var generation = _horizonGeneration;
        if (address >= durableTail) return null;

        var retentionLimit = _options.RetentionCapBytes;
        // Writeback throttling (like dm-writecache's watermarks): past the retention cap, history is
        // destaged one step per destage interval while the log is below the high watermark, so
        // foreground log syncs do not queue behind a flood of backing writeback; above it, flat out.
        var highWatermark = retentionLimit + (_options.LogCapacity - retentionLimit) / 2;
        var paced = Interlocked.Read(ref _tail) - address < highWatermark;
        if (paced && DateTime.UtcNow < _nextPacedStep) retentionLimit = long.MaxValue;
        var cutoff = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000 - (long)_options.RetentionTime.TotalMicroseconds;
        // The destager runs on every tick (and on urgent wake-ups); while the oldest batch is inside the
        // retention window it stays there, so its header is not read again until its time comes, the
        // log passes the cap or a drain asks for it.
        if (address == _notDueAddress && _notDueTime > cutoff && Interlocked.Read(ref _tail) - address <= retentionLimit &&
            address >= Interlocked.Read(ref _drainTo))
            return null;
        var newest = new SortedDictionary<long, DestageBlock>();
        var blocks = 0;
        var shrinking = false;
        while (address < durableTail && blocks < DestageStepBlocks)
        {
            if (!reader.TryFind(ref address, sequence, out var header))
                throw new BlockTargetException(BlockError.Io, $"log record {sequence} at {address} cannot be read back for destaging");
            var overLimit = Interlocked.Read(ref _tail) - address > retentionLimit;
            var due = header.TimeMicros <= cutoff || overLimit || address < Interlocked.Read(ref _drainTo);
            if (!due)
            {
                // Keyed by the horizon, not where the batch was found (the next segment's start, past a gap).
                if (sequence == _horizonSequence) (_notDueAddress, _notDueTime) = (Interlocked.Read(ref _horizon), header.TimeMicros);
                break;
            }
            if (overLimit && header.TimeMicros > cutoff) shrinking = true;
            var dataBlock = LogReader.DataAddress(address) >> BlockShift;
            var headerBlock = address >> BlockShift;
            foreach (var entry in reader.Entries.AsSpan(0, header.EntryCount))
            {
                for (var b = 0; b < entry.BlockCount; b++)
                {
                    var block = entry.Block + b;
                    newest[block] = entry.Type == LogEntryType.Data
                        ? new DestageBlock(block, BlockIndex.Encode(BlockLocation.Log, dataBlock + b), false)
                        : new DestageBlock(block, BlockIndex.Encode(BlockLocation.Zero, headerBlock), entry.Type == LogEntryType.Trim);
                }
                if (entry.Type == LogEntryType.Data) dataBlock += entry.BlockCount;
                blocks += entry.BlockCount;
            }
            generation = header.IsSyncPoint ? header.Generation + 1 : header.Generation;
            address += header.SizeBytes;
            sequence++;
        }
        if (address == Interlocked.Read(ref _horizon)) return null;
        if (shrinking)
        {
            if (paced) _nextPacedStep = DateTime.UtcNow + _options.DestageInterval;
            Interlocked.Increment(ref _retentionShrinks);
            if (!_shrinkReported)
                _logger.LogWarning("volume {Name}: the log passed {Percent:P0} of its capacity; retention shrinks below {Retention} so writers do not stall",
                    _name, _options.RetentionMaxFraction, _options.RetentionTime);
            _shrinkReported = true;
        }
        else _shrinkReported = false;

        var extents = new List<ExtentDestage>();
        foreach (var block in newest.Values)
        {
            var extent = block.Block >> BlockIndex.ExtentBlocksShift;
            if (extents.Count == 0 || extents[^1].Extent != extent) extents.Add(new ExtentDestage(extent, []));
            extents[^1].Blocks.Add(block);
        }
        return new DestagePlan(extents, address, sequence, generation);
    }

    /// <summary>
    /// Writes the newest version of each block of one extent in block order, coalescing neighbours into
    /// one I/O. Run by the extent's actor; asynchronous so a slow backing (a remote or delayed disk)
    /// serves many extents' writes at once instead of one per dispatcher thread.
    /// </summary>
    internal async Task WriteToBackingAsync(List<DestageBlock> blocks, byte[] buffer)
    {
        var i = 0;
        while (i < blocks.Count)
        {
            var (start, entry, deallocate) = blocks[i];
            var kind = BlockIndex.LocationOf(entry);
            // The run: neighbouring blocks of the same kind (log data also consecutive in the log, up to one buffer).
            var end = i + 1;
            while (end < blocks.Count && blocks[end].Block == start + (end - i) && BlockIndex.LocationOf(blocks[end].Entry) == kind &&
                   (kind == BlockLocation.Log
                       ? BlockIndex.ValueOf(blocks[end].Entry) == BlockIndex.ValueOf(entry) + (end - i) && (end - i + 1) * BlockSize <= buffer.Length
                       : blocks[end].Deallocate == deallocate))
                end++;
            var count = end - i;
            if (kind == BlockLocation.Log)
            {
                var length = count * BlockSize;
                if (!_medium.TryRead(BlockIndex.ValueOf(entry) << BlockShift, buffer.AsSpan(0, length)))
                    throw new BlockTargetException(BlockError.Io, $"log block {BlockIndex.ValueOf(entry)} vanished before it was destaged");
                await _backing.WriteAsync(start << BlockShift, buffer.AsMemory(0, length), fua: false).ConfigureAwait(false);
            }
            else if (deallocate)
                await _backing.TrimAsync(start << BlockShift, (long)count << BlockShift, fua: false).ConfigureAwait(false);
            else
                await _backing.WriteZeroesAsync(start << BlockShift, (long)count << BlockShift, mayDeallocate: false, fastOnly: false, fua: false)
                    .ConfigureAwait(false);
            i = end;
        }
    }

    /// <summary>The buffer an extent needs for its largest run of log data (at most one destage chunk).</summary>
    internal static int DestageBufferFor(List<DestageBlock> blocks) => Math.Min(DestageBufferBytes, Math.Max(1, blocks.Count) * BlockSize);

    /// <summary>Makes every destaged write durable on the backing before any index entry or log segment lets go of it.</summary>
    internal void SyncBacking() => _backing.FlushAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>The backing has these blocks now: reads go there, unless a newer version arrived meanwhile. Run by the extent's actor.</summary>
    internal void PublishDestaged(ExtentHandle extent, List<DestageBlock> blocks)
    {
        foreach (var (block, entry, _) in blocks)
            if (_index.Replace(block, entry, 0)) extent.Cached--;
        Interlocked.Add(ref _blocksDestaged, blocks.Count);
    }

    /// <summary>Advances the horizon past the step (checkpoint first, so a crash never replays less than it must) and frees whole segments.</summary>
    internal void CompleteDestageStep(DestagePlan plan)
    {
        new Checkpoint(_volumeId, plan.Address, plan.Sequence, plan.Generation).Save(_options.LogDirectory);
        Interlocked.Exchange(ref _horizon, plan.Address);
        _horizonSequence = plan.Sequence;
        _horizonGeneration = plan.Generation;
        foreach (var segment in _medium.Segments)
            if ((segment + 1) * _medium.SegmentSize <= plan.Address) _medium.Release(segment);
        _logSpaceFreed.Set();
    }

    internal void OnBackingFailure(BlockTargetException e)
    {
        if (_backingFailure is null)
            _logger.LogError("volume {Name} DEGRADED: destaging to the backing failed: {Message}. The data stays in the log and is still served; " +
                             "destaging is retried", _name, e.Message);
        _backingFailure = e.Message;
    }

    internal void OnBackingWorks()
    {
        if (_backingFailure is null) return;
        _logger.LogInformation("volume {Name}: the backing accepts writes again; destaging resumed", _name);
        _backingFailure = null;
    }
}

/// <summary>The newest version of one block in a destage step: a log block, or a zeroed (possibly deallocated) block.</summary>
internal readonly record struct DestageBlock(long Block, ulong Entry, bool Deallocate);

/// <summary>The blocks of one extent in a destage step, in block order.</summary>
internal sealed record ExtentDestage(long Extent, List<DestageBlock> Blocks);

/// <summary>One destage step: what each extent writes, and where the horizon goes once all of it is on the backing.</summary>
internal sealed record DestagePlan(List<ExtentDestage> Extents, long Address, long Sequence, long Generation);
