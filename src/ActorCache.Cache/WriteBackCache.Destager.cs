using ActorCache.Blocks;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// The destager: copies log history older than the retention window to the backing in block order,
/// fdatasyncs the backing, then advances the horizon (checkpoint) and frees log segments. The backing
/// therefore always holds the volume as of the oldest retained generation.
/// </summary>
public sealed partial class WriteBackCache
{
    private const int DestageChunkBlocks = 256; // 1 MiB per backing write at most
    private const int DestageStepBlocks = 16384; // 64 MiB of history per step

    private readonly Thread _destager;
    private readonly AutoResetEvent _wakeDestager = new(false);
    private long _horizon, _horizonSequence, _horizonGeneration, _drainTo;
    private volatile string? _backingFailure;
    private bool _shrinkReported;

    private void DestagerLoop()
    {
        var reader = new LogReader(_medium, _volumeId);
        var buffer = GC.AllocateUninitializedArray<byte>(DestageChunkBlocks * BlockSize, pinned: true);
        var backoff = TimeSpan.FromMilliseconds(100);
        while (!_stopping)
        {
            _wakeDestager.WaitOne(_options.DestageInterval);
            if (_readOnlyReason is not null || _stopping) continue; // a damaged log is left as it is for inspection
            try
            {
                while (!_stopping && DestageStep(reader, buffer)) { }
                if (_backingFailure is not null)
                {
                    _logger.LogInformation("volume {Name}: the backing accepts writes again; destaging resumed", _name);
                    _backingFailure = null;
                }
                backoff = TimeSpan.FromMilliseconds(100);
            }
            catch (BlockTargetException e)
            {
                if (_backingFailure is null)
                    _logger.LogError("volume {Name} DEGRADED: destaging to the backing failed: {Message}. The data stays in the log and is still served; " +
                                     "destaging is retried", _name, e.Message);
                _backingFailure = e.Message;
                Thread.Sleep(backoff);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
        }
    }

    /// <summary>Destages one step of due history; false when nothing is due.</summary>
    private bool DestageStep(LogReader reader, byte[] buffer)
    {
        var durableTail = Interlocked.Read(ref _durableTail);
        var address = Interlocked.Read(ref _horizon);
        var sequence = _horizonSequence;
        var generation = _horizonGeneration;
        if (address >= durableTail) return false;

        var retentionLimit = (long)(_options.LogCapacity * _options.RetentionMaxFraction);
        var cutoff = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000 - (long)_options.RetentionTime.TotalMicroseconds;
        var newest = new SortedDictionary<long, (ulong Entry, bool Deallocate)>();
        var blocks = 0;
        var shrinking = false;
        while (address < durableTail && blocks < DestageStepBlocks)
        {
            if (!reader.TryFind(ref address, sequence, out var header))
                throw new BlockTargetException(BlockError.Io, $"log record {sequence} at {address} cannot be read back for destaging");
            var overLimit = Interlocked.Read(ref _tail) - address > retentionLimit;
            var due = header.TimeMicros <= cutoff || overLimit || address < Interlocked.Read(ref _drainTo);
            if (!due) break;
            if (overLimit && header.TimeMicros > cutoff) shrinking = true;
            var dataBlock = LogReader.DataAddress(address) >> BlockShift;
            var headerBlock = address >> BlockShift;
            foreach (var entry in reader.Entries.AsSpan(0, header.EntryCount))
            {
                for (var b = 0; b < entry.BlockCount; b++)
                {
                    newest[entry.Block + b] = entry.Type == LogEntryType.Data
                        ? (BlockIndex.Encode(BlockLocation.Log, dataBlock + b), false)
                        : (BlockIndex.Encode(BlockLocation.Zero, headerBlock), entry.Type == LogEntryType.Trim);
                }
                if (entry.Type == LogEntryType.Data) dataBlock += entry.BlockCount;
                blocks += entry.BlockCount;
            }
            generation = header.IsSyncPoint ? header.Generation + 1 : header.Generation;
            address += header.SizeBytes;
            sequence++;
        }
        if (address == Interlocked.Read(ref _horizon)) return false;
        if (shrinking)
        {
            Interlocked.Increment(ref _retentionShrinks);
            if (!_shrinkReported)
                _logger.LogWarning("volume {Name}: the log passed {Percent:P0} of its capacity; retention shrinks below {Retention} so writers do not stall",
                    _name, _options.RetentionMaxFraction, _options.RetentionTime);
            _shrinkReported = true;
        }
        else _shrinkReported = false;

        WriteToBacking(newest, buffer);
        _backing.FlushAsync().AsTask().GetAwaiter().GetResult();

        // The backing has it now: reads may go there, unless a newer version arrived meanwhile.
        foreach (var (block, (entry, _)) in newest) _index.Replace(block, entry, 0);
        Interlocked.Add(ref _blocksDestaged, newest.Count);

        new Checkpoint(_volumeId, address, sequence, generation).Save(_options.LogDirectory);
        Interlocked.Exchange(ref _horizon, address);
        _horizonSequence = sequence;
        _horizonGeneration = generation;
        foreach (var segment in _medium.Segments)
            if ((segment + 1) * _medium.SegmentSize <= address) _medium.Release(segment);
        _logSpaceFreed.Set();
        return true;
    }

    /// <summary>Writes the newest version of each block in block order, coalescing neighbours into one I/O.</summary>
    private void WriteToBacking(SortedDictionary<long, (ulong Entry, bool Deallocate)> newest, byte[] buffer)
    {
        long runStart = -1, runNext = -1, runLogNext = -1;
        var runKind = BlockLocation.Backing;
        var runDeallocate = false;
        var filled = 0;

        void FlushRun()
        {
            if (runStart < 0) return;
            var count = runNext - runStart;
            if (runKind == BlockLocation.Log)
            {
                _backing.WriteAsync(runStart << BlockShift, buffer.AsMemory(0, filled), fua: false).AsTask().GetAwaiter().GetResult();
            }
            else if (runDeallocate)
                _backing.TrimAsync(runStart << BlockShift, count << BlockShift, fua: false).AsTask().GetAwaiter().GetResult();
            else
                _backing.WriteZeroesAsync(runStart << BlockShift, count << BlockShift, mayDeallocate: false, fastOnly: false, fua: false)
                    .AsTask().GetAwaiter().GetResult();
            runStart = -1;
            filled = 0;
        }

        foreach (var (block, (entry, deallocate)) in newest)
        {
            var kind = BlockIndex.LocationOf(entry);
            var logBlock = BlockIndex.ValueOf(entry);
            var continues = runStart >= 0 && block == runNext && kind == runKind &&
                            (kind == BlockLocation.Log ? logBlock == runLogNext && filled < buffer.Length : deallocate == runDeallocate);
            if (!continues)
            {
                FlushRun();
                runStart = block;
                runKind = kind;
                runDeallocate = deallocate;
            }
            if (kind == BlockLocation.Log)
            {
                if (!_medium.TryRead(logBlock << BlockShift, buffer.AsSpan(filled, BlockSize)))
                    throw new BlockTargetException(BlockError.Io, $"log block {logBlock} vanished before it was destaged");
                filled += BlockSize;
                runLogNext = logBlock + 1;
            }
            runNext = block + 1;
        }
        FlushRun();
    }
}
