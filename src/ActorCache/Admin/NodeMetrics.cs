using ActorCache.Cache;
using ActorCache.Volumes;
using Prometheus;

namespace ActorCache.Admin;

/// <summary>
/// The node's Prometheus metrics. Values are read when a scrape asks for them (a before-collect callback
/// asks every volume actor for its status), so the I/O path pays nothing: the cache keeps its counters anyway.
/// </summary>
public sealed class NodeMetrics
{
    private static readonly VolumeMode[] Modes = Enum.GetValues<VolumeMode>();

    private readonly VolumeStatusReader _volumes;
    private readonly RingBuffer _ring;

    private readonly Gauge _online, _degraded, _readOnly, _mode, _size;
    private readonly Gauge _cachedBlocks, _indexBytes, _logBytes, _generation;
    private readonly Counter _batchesWritten, _syncs, _syncPointRecords, _corruptRecords, _tornTails;
    private readonly Gauge _logCapacity;
    private readonly Gauge _recovering, _recoveryDone, _recoveryTotal, _scrubVerified, _scrubTotal;
    private readonly Counter _commits, _commitSeconds, _flushes, _flushSeconds;
    private readonly ExternalHistogram _flushLatency;
    private readonly Gauge _snapshots, _preservedBytes, _preservedBlocks, _oldestRestorable;
    private readonly Counter _expired;
    private readonly ActorCache.Snapshots.SnapshotCatalog _snapshotCatalog;
    private readonly Counter _blocksDestaged, _ringWaits, _retentionShrinks;
    private readonly Gauge _ringSlots, _ringFreeSlots;
    private readonly Gauge _operationDone, _operationTotal;
    private readonly Counter _reads, _readBytes, _writes, _writtenBytes;
    private readonly AdminOperations _operations;
    private HashSet<string> _exported = [];
    private HashSet<(string Kind, string Target)> _running = [];

    private readonly ActorCache.Replicas.ReplicationMetrics? _replication;

    public NodeMetrics(VolumeStatusReader volumes, RingBuffer ring, ActorCache.Snapshots.SnapshotCatalog snapshots, AdminOperations operations,
        ActorCache.Replicas.ReplicaRoles? replicas = null)
    {
        _operations = operations;
        _snapshotCatalog = snapshots;
        _volumes = volumes;
        _ring = ring;
        // A registry of our own: only what is defined here is exported, nothing registered elsewhere in the process.
        Registry = Metrics.NewCustomRegistry();
        var metrics = Metrics.WithCustomRegistry(Registry);
        string[] volume = ["volume"];
        Gauge VolumeGauge(string name, string help) => metrics.CreateGauge(name, help, volume);
        Counter VolumeCounter(string name, string help) => metrics.CreateCounter(name, help, volume);

        _online = VolumeGauge("actorcache_volume_online", "1 when the volume is open and served, else 0.");
        _degraded = VolumeGauge("actorcache_volume_degraded",
            "1 when the volume is degraded (damaged log record, backing or log refusing writes); GET /health says why.");
        _readOnly = VolumeGauge("actorcache_volume_read_only", "1 when the volume refuses writes (defined read-only, or a damaged log record).");
        _mode = metrics.CreateGauge("actorcache_volume_mode", "1 for the volume's current mode, 0 for the others.", "volume", "mode");
        _size = VolumeGauge("actorcache_volume_size_bytes", "Size of the volume.");
        _reads = VolumeCounter("actorcache_volume_reads_total", "Read requests the volume was asked for (by any client, over any connection).");
        _readBytes = VolumeCounter("actorcache_volume_read_bytes_total", "Bytes those read requests asked for.");
        _writes = VolumeCounter("actorcache_volume_writes_total", "Write requests the volume was asked for (trims and zeroes not included).");
        _writtenBytes = VolumeCounter("actorcache_volume_written_bytes_total", "Bytes those write requests carried.");

        _cachedBlocks = VolumeGauge("actorcache_cache_cached_blocks", "4 KiB blocks whose newest version is in the ring or the log, not yet on the backing.");
        _indexBytes = VolumeGauge("actorcache_cache_index_bytes", "Memory held by the volume's block index.");
        _blocksDestaged = VolumeCounter("actorcache_cache_blocks_destaged_total", "4 KiB blocks written from the log to the backing.");
        _ringWaits = VolumeCounter("actorcache_cache_ring_waits_total", "Writes that waited for free ring slots (backpressure).");
        _retentionShrinks = VolumeCounter("actorcache_cache_retention_shrinks_total",
            "Times the retention window was cut short because history exceeded retention-max-fraction of the log capacity.");
        _logBytes = VolumeGauge("actorcache_log_bytes", "Log bytes between the destage horizon and the tail (history not yet destaged).");
        _generation = VolumeGauge("actorcache_log_generation", "Current generation of the volume's log (every completed FLUSH closes one).");
        _batchesWritten = VolumeCounter("actorcache_log_batches_written_total", "Batches the flusher appended to the log.");
        _syncs = VolumeCounter("actorcache_log_syncs_total", "fdatasync calls on the log (one serves every waiting FLUSH and FUA).");
        _syncPointRecords = VolumeCounter("actorcache_log_sync_point_records_total",
            "Sync-point records written: a FLUSH arrived after its writes were already in the log, so a header without data closes its generation.");
        _commits = VolumeCounter("actorcache_log_commits_total", "Group commits for FLUSH/FUA waiters (each one fdatasync serving every waiter).");
        _commitSeconds = metrics.CreateCounter("actorcache_log_commit_seconds_total",
            "Time group commits spent, by stage: wake (the flusher's doorbell rung to its start), write (appending what the waiters wait for), sync (the fdatasync).",
            "volume", "stage");
        _flushes = VolumeCounter("actorcache_cache_flushes_total", "FLUSH requests the cache completed.");
        _flushSeconds = VolumeCounter("actorcache_cache_flush_seconds_total",
            "Time FLUSH requests spent in the cache, from the call to the caller running again (so it includes handing the completion back).");
        _flushLatency = new ExternalHistogram("actorcache_cache_flush_latency_seconds",
            "Time FLUSH requests spent in the cache (as actorcache_cache_flush_seconds_total counts it), in log-spaced buckets.",
            LatencyHistogram.UpperBoundsSeconds);
        _snapshots = VolumeGauge("actorcache_snapshots", "Kept snapshots of the volume.");
        _preservedBytes = VolumeGauge("actorcache_snapshot_preserved_bytes",
            "Bytes held for kept snapshots and open views of the past: backing blocks copied aside before the destager overwrote them.");
        _preservedBlocks = VolumeGauge("actorcache_snapshot_preserved_blocks", "4 KiB backing blocks copied aside for kept snapshots (copy-on-write).");
        _expired = VolumeCounter("actorcache_snapshots_expired_total",
            "Kept snapshots given up to stay within cache.snapshot-space (policy expire-oldest); `snapshot list` shows them as expired.");
        _oldestRestorable = VolumeGauge("actorcache_history_oldest_restorable_seconds",
            "Unix time of the oldest point the volume can be brought back to without a snapshot (0 when there is none).");
        _logCapacity = VolumeGauge("actorcache_log_capacity_bytes",
            "Bytes the log may use now: cache.log-capacity, or less when its file system cannot hold that (sized at start, capped while it is full).");
        _corruptRecords = VolumeCounter("actorcache_log_corrupt_records_total",
            "Damaged log records found: by recovery when the volume was opened (at most 1), and by the scrub of the records a persisted index covered " +
            "after it; the first makes the volume degraded and read-only.");
        _tornTails = VolumeCounter("actorcache_log_torn_tails_total",
            "Torn log tails (written after the last fdatasync, never promised) recovery cut off when the volume was opened (at most 1).");

        _recovering = VolumeGauge("actorcache_volume_recovering", "1 while the volume is opening (replaying its log), else 0.");
        _recoveryDone = VolumeGauge("actorcache_volume_recovery_done_bytes", "While the volume opens: log bytes replayed so far (no series once it is open).");
        _recoveryTotal = VolumeGauge("actorcache_volume_recovery_total_bytes", "While the volume opens: log bytes to replay (0 before the replay has started).");
        _scrubTotal = VolumeGauge("actorcache_scrub_total_bytes",
            "Log bytes the persisted index covered when the volume opened, verified in the background since (0 after a full replay).");
        _scrubVerified = VolumeGauge("actorcache_scrub_verified_bytes", "Of those, bytes whose records are verified (header and data checksums) so far.");

        _ringSlots = metrics.CreateGauge("actorcache_ring_slots", "4 KiB slots in the node's RAM ring, shared by every volume.");
        _ringFreeSlots = metrics.CreateGauge("actorcache_ring_free_slots", "Ring slots free right now.");

        _operationDone = metrics.CreateGauge("actorcache_operation_done",
            "Long work under way (a revert, an independent clone's copy, a mode switch's drain): how much is done, in its unit (bytes or blocks).",
            "kind", "target");
        _operationTotal = metrics.CreateGauge("actorcache_operation_total", "Long work under way: how much there is in all (0 when it cannot say).",
            "kind", "target");

        if (replicas is not null) _replication = new ActorCache.Replicas.ReplicationMetrics(metrics, replicas);
        Registry.AddBeforeCollectCallback(UpdateAsync);
    }

    /// <summary>The registry's families; <see cref="ExportAsTextAsync"/> adds the ones it cannot hold.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Every metric in the Prometheus text format: the registry's (its callback updates them all), then the FLUSH latency histogram.</summary>
    public async Task ExportAsTextAsync(Stream destination, CancellationToken cancellationToken)
    {
        await Registry.CollectAndExportAsTextAsync(destination, cancellationToken);
        await destination.WriteAsync(System.Text.Encoding.UTF8.GetBytes(_flushLatency.Text()), cancellationToken);
    }

    /// <summary>Replication's lines for /health (none on a node without replicated volumes).</summary>
    public IEnumerable<string> ReplicationProblems() => _replication?.Problems() ?? [];

    private async Task UpdateAsync(CancellationToken cancellationToken)
    {
        _ringSlots.Set(_ring.SlotCount);
        _ringFreeSlots.Set(_ring.FreeSlots);
        UpdateOperations();
        _replication?.Update();
        var reports = await _volumes.ReadAsync(cancellationToken);
        foreach (var report in reports)
        {
            // A volume that did not answer keeps the values of the last scrape; /health names it.
            if (report.Status is { } status) Update(report, status);
            else if (report.Progress is { } progress) UpdateRecovering(report.Name, progress);
        }
        // A volume deleted since the last scrape leaves no series behind.
        var names = reports.Select(r => r.Name).ToHashSet();
        foreach (var gone in _exported.Where(n => !names.Contains(n))) Forget(gone);
        _exported = names;
    }

    /// <summary>Running operations have a series each (kind, target); finished ones leave none behind.</summary>
    private void UpdateOperations()
    {
        var running = _operations.List().Where(o => o.FinishedAt is null).Select(o => o.Info()).ToList();
        foreach (var operation in running)
        {
            _operationDone.WithLabels(operation.Kind, operation.Target).Set(operation.Done);
            _operationTotal.WithLabels(operation.Kind, operation.Target).Set(operation.Total);
        }
        var now = running.Select(o => (o.Kind, o.Target)).ToHashSet();
        foreach (var (kind, target) in _running.Where(k => !now.Contains(k)))
        {
            _operationDone.RemoveLabelled(kind, target);
            _operationTotal.RemoveLabelled(kind, target);
        }
        _running = now;
    }

    private void Forget(string name)
    {
        foreach (var collector in new Collector<Gauge.Child>[]
                 {
                     _online, _degraded, _readOnly, _size, _cachedBlocks, _indexBytes, _logBytes, _generation, _logCapacity, _snapshots, _preservedBytes,
                     _preservedBlocks, _oldestRestorable, _recovering, _recoveryDone, _recoveryTotal, _scrubTotal, _scrubVerified,
                 })
            collector.RemoveLabelled(name);
        foreach (var collector in new Collector<Counter.Child>[]
                 {
                     _batchesWritten, _syncs, _syncPointRecords, _commits, _flushes, _flushSeconds, _corruptRecords, _tornTails, _blocksDestaged, _ringWaits, _retentionShrinks, _expired,
                     _reads, _readBytes, _writes, _writtenBytes,
                 })
            collector.RemoveLabelled(name);
        foreach (var mode in Modes) _mode.RemoveLabelled(name, VolumeSpec.FormatMode(mode));
        foreach (var stage in new[] { "wake", "write", "sync" }) _commitSeconds.RemoveLabelled(name, stage);
        _flushLatency.Remove(name);
    }

    /// <summary>A volume still opening: not online, and how far its replay is.</summary>
    private void UpdateRecovering(string name, ActorCache.Volumes.RecoveryProgress progress)
    {
        _online.WithLabels(name).Set(0);
        _recovering.WithLabels(name).Set(1);
        _recoveryDone.WithLabels(name).Set(progress.DoneBytes);
        _recoveryTotal.WithLabels(name).Set(progress.TotalBytes);
    }

    private void Update(VolumeReport report, VolumeStatus status)
    {
        var name = report.Name;
        _recovering.WithLabels(name).Set(0);
        _recoveryDone.RemoveLabelled(name);
        _recoveryTotal.RemoveLabelled(name);
        _online.WithLabels(name).Set(status.Online ? 1 : 0);
        _degraded.WithLabels(name).Set(VolumeHealth.IsDegraded(report) ? 1 : 0);
        _readOnly.WithLabels(name).Set(VolumeHealth.IsReadOnly(report) ? 1 : 0);
        foreach (var mode in Modes)
            _mode.WithLabels(name, VolumeSpec.FormatMode(mode)).Set(status.Definition.Mode == mode ? 1 : 0);
        _size.WithLabels(name).Set(status.Definition.Size);
        // Counted by the volume since it was opened, which is once for the life of the node.
        if (status.Io is { } io)
        {
            _reads.WithLabels(name).IncTo(io.Reads);
            _readBytes.WithLabels(name).IncTo(io.ReadBytes);
            _writes.WithLabels(name).IncTo(io.Writes);
            _writtenBytes.WithLabels(name).IncTo(io.WrittenBytes);
        }

        // Read-only volumes and pass-through volumes that never had a log have no cache: no cache or log series either.
        if (status.Cache is not { } cache) return;
        _cachedBlocks.WithLabels(name).Set(cache.CachedBlocks);
        _indexBytes.WithLabels(name).Set(cache.IndexBytes);
        _logBytes.WithLabels(name).Set(cache.LogBytes);
        _generation.WithLabels(name).Set(cache.Generation);
        // The cache's counters only grow while its volume is open, and a volume stays open for the life of the node.
        _batchesWritten.WithLabels(name).IncTo(cache.BatchesWritten);
        _syncs.WithLabels(name).IncTo(cache.Syncs);
        _syncPointRecords.WithLabels(name).IncTo(cache.SyncPointRecords);
        var times = cache.CommitTimes;
        _commits.WithLabels(name).IncTo(times.Commits);
        _commitSeconds.WithLabels(name, "wake").IncTo(times.WakeSeconds);
        _commitSeconds.WithLabels(name, "write").IncTo(times.WriteSeconds);
        _commitSeconds.WithLabels(name, "sync").IncTo(times.SyncSeconds);
        _flushes.WithLabels(name).IncTo(times.Flushes);
        _flushSeconds.WithLabels(name).IncTo(times.FlushSeconds);
        _flushLatency.Set(name, cache.FlushLatencyBuckets, times.FlushSeconds);
        _logCapacity.WithLabels(name).Set(cache.LogCapacity);
        _snapshots.WithLabels(name).Set(_snapshotCatalog.List(name).Count);
        _preservedBytes.WithLabels(name).Set(cache.PreservedBytes);
        _preservedBlocks.WithLabels(name).Set(cache.PreservedBlocks);
        _oldestRestorable.WithLabels(name).Set(cache.OldestRestorableMicros / 1e6);
        _expired.WithLabels(name).IncTo(cache.ExpiredSnapshots);
        _blocksDestaged.WithLabels(name).IncTo(cache.BlocksDestaged);
        _ringWaits.WithLabels(name).IncTo(cache.RingWaits);
        _retentionShrinks.WithLabels(name).IncTo(cache.RetentionShrinks);
        _corruptRecords.WithLabels(name).IncTo(cache.CorruptRecords);
        _tornTails.WithLabels(name).IncTo(cache.TornTails);
        _scrubTotal.WithLabels(name).Set(cache.ScrubTotalBytes);
        _scrubVerified.WithLabels(name).Set(cache.ScrubVerifiedBytes);
    }
}
