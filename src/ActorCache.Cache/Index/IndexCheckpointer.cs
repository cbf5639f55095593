using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// Persists the live index now and then (after <see cref="CacheOptions.IndexSaveBytes"/> of new log, or
/// <see cref="CacheOptions.IndexSaveInterval"/> with anything new) and when the volume closes, so an open
/// replays only the log written since (<see cref="IndexRecovery"/>). Owns the <c>index</c> file.
/// </summary>
/// <remarks>
/// A save freezes the index in log order (<see cref="AppendQueue.BeginCapture"/>: no pause, writers go
/// on), waits until the log is durable through the batch the capture covers and that batch's sync
/// points are in the history, then writes the file on its own time. Nothing on the I/O path waits for it.
/// </remarks>
internal sealed class IndexCheckpointer(
    string name, AppendQueue queue, ILogMedium medium, ILogDirectory directory, LogWindow window, DurabilityBarrier barrier,
    LogHistory history, Guid volumeId, CacheOptions options, ILogger logger, Func<bool> enabled)
{
    private readonly SemaphoreSlim _one = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;
    private long _savedEnd = -1;
    private DateTime _savedAt = DateTime.UtcNow;

    /// <summary>Saves taken so far (status and tests).</summary>
    public long Saves { get; private set; }

    /// <param name="savedEnd">Where the log the persisted index covers ends, or -1 when it covers nothing this open used.</param>
    public void Start(long savedEnd)
    {
        _savedEnd = savedEnd;
        _loop = Task.Run(RunAsync);
    }

    private async Task RunAsync()
    {
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(options.IndexSaveInterval.TotalMilliseconds / 4, 10, 1000));
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(tick, _stop.Token).ConfigureAwait(false);
                var grown = window.Tail - _savedEnd;
                if (grown > 0 && (grown >= options.IndexSaveBytes || DateTime.UtcNow - _savedAt >= options.IndexSaveInterval))
                {
                    if (!await SaveAsync(_stop.Token).ConfigureAwait(false)) _savedAt = DateTime.UtcNow; // nothing to save: not before the next interval
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Not saving costs open time only: the log still has everything. Whatever the reason (a capture cancelled because
                // the flusher stopped, an index too large to save), the loop goes on: a faulted loop would fail the volume's close.
                logger.LogWarning("volume {Name}: could not persist the index ({Error}); the next open replays more of the log", name, e.Message);
                _savedAt = DateTime.UtcNow;
            }
        }
    }

    /// <summary>Stops the periodic saves and, when <paramref name="final"/>, saves once more (a clean stop: the log is durable and nothing is queued).</summary>
    public async Task StopAsync(bool final)
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null) await _loop.ConfigureAwait(false);
        if (!final || window.Tail == _savedEnd) return;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await SaveAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OperationCanceledException or ActorCache.Blocks.BlockTargetException)
        {
            logger.LogWarning("volume {Name}: could not persist the index at close ({Error}); the next open replays the log", name, e.Message);
        }
    }

    /// <summary>Captures the index and persists it; false when there was nothing to save or the volume keeps no history now.</summary>
    public async Task<bool> SaveAsync(CancellationToken cancellationToken)
    {
        await _one.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!enabled() || queue.BeginCapture() is not { } capture) return false;
            var (headerBlock, endBlock) = await capture.Completed.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (headerBlock < 0) return false; // the log holds no batch since the horizon
            var address = headerBlock << LogFormat.BlockShift;
            var end = endBlock << LogFormat.BlockShift;
            // The file may claim only what a crash keeps: the log durable through the batch (the flusher commits every commit-interval).
            while (window.DurableTail < end) await Task.Delay(5, cancellationToken).ConfigureAwait(false);
            var reader = new LogReader(medium, volumeId);
            if (!reader.TryReadAt(address, out var header) || PersistedIndex.HeaderBlockCrc(medium, address) is not { } crc)
                return false; // destaged and released meanwhile: the horizon is past it, nothing to gain
            // Sync-point records after it change no block: covering them too spares the next open their replay.
            for (var more = 0; more < 64 && window.DurableTail >= end + LogFormat.BlockSize; more++)
            {
                var next = end;
                if (!reader.TryFind(ref next, header.Sequence + 1, out var record) || record.EntryCount != 0 || record.DataBlocks != 0 ||
                    window.DurableTail < next + record.SizeBytes || PersistedIndex.HeaderBlockCrc(medium, next) is not { } recordCrc)
                    break;
                (address, end, header, crc) = (next, next + record.SizeBytes, record, recordCrc);
            }
            var generationAfter = header.IsSyncPoint ? header.Generation + 1 : header.Generation;
            // The batch's sync points enter the history once durable everywhere the barrier asks.
            while (barrier.ClosedGeneration < generationAfter - 1) await Task.Delay(5, cancellationToken).ConfigureAwait(false);
            var horizon = window.Horizon;
            var points = history.ToList().Where(p => p.Sequence <= header.Sequence).ToList();
            var started = DateTime.UtcNow;
            var entries = await Task.Run(() => capture.LoggedEntries(horizon), cancellationToken).ConfigureAwait(false);
            if (entries is null)
            {
                logger.LogWarning("volume {Name}: an index capture held a block the log had not finished; not persisted", name);
                return false;
            }
            var persisted = new PersistedIndex(volumeId, address, header.Sequence, crc, end, generationAfter, header.TimeMicros, capture.Blocks, points, entries);
            await Task.Run(() => persisted.Save(directory), cancellationToken).ConfigureAwait(false);
            (_savedEnd, _savedAt) = (end, DateTime.UtcNow);
            Saves++;
            logger.LogDebug("volume {Name}: index persisted through batch {Sequence} ({Entries} entries, {Points} sync points) in {Elapsed:F3}s",
                name, header.Sequence, entries.Count, points.Count, (DateTime.UtcNow - started).TotalSeconds);
            return true;
        }
        finally
        {
            _one.Release();
        }
    }
}
