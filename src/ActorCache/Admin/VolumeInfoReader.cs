using ActorCache.Admin.Api;
using ActorCache.Cache;
using ActorCache.Hosting;
using ActorCache.Volumes;
using Akka.Actor;
using Akka.Hosting;

namespace ActorCache.Admin;

/// <summary>
/// What the admin API says about volumes: each one's status from its actor (as /metrics and /health
/// read it), its health, and the NBD clients attached to it now.
/// </summary>
public sealed class VolumeInfoReader(NodeVolumes volumes, VolumeStatusReader statuses, NodeService node, ActorRegistry registry,
    ActorCache.Hosting.NodeSettings settings, ActorCache.Replicas.ReplicaRoles replicas)
{
    public async Task<IReadOnlyList<VolumeInfo>> ListAsync(CancellationToken cancellationToken)
    {
        var reports = await statuses.ReadAsync(cancellationToken);
        var definitions = await DefinitionsIfNeededAsync(reports, cancellationToken);
        return [.. reports.Select(r => From(r, definitions)).OrderBy(v => v.Name, StringComparer.Ordinal)];
    }

    /// <summary>One volume, or <see cref="VolumeNotFoundException"/>.</summary>
    public async Task<VolumeInfo> GetAsync(string name, CancellationToken cancellationToken)
    {
        var volume = volumes.Find(name) ?? throw new VolumeNotFoundException(name);
        var report = await VolumeStatusReader.AskAsync(volume, cancellationToken);
        return From(report, await DefinitionsIfNeededAsync([report], cancellationToken));
    }

    /// <summary>The registry's definitions, needed only for a volume whose actor did not answer (its size and backing are still known).</summary>
    private async Task<IReadOnlyList<VolumeDefinition>> DefinitionsIfNeededAsync(IReadOnlyList<VolumeReport> reports, CancellationToken ct)
    {
        if (reports.All(r => r.Status is not null)) return [];
        var volumeRegistry = await registry.GetAsync<VolumeRegistry>(ct);
        return (await volumeRegistry.Ask<VolumeList>(GetVolumes.Instance, VolumeStatusReader.Timeout, ct)).Volumes;
    }

    private VolumeInfo From(VolumeReport report, IReadOnlyList<VolumeDefinition> definitions)
    {
        var status = report.Status;
        var definition = status?.Definition ?? definitions.FirstOrDefault(d => d.Name == report.Name);
        var cache = status?.Cache;
        return new VolumeInfo
        {
            Name = report.Name,
            Size = definition?.Size ?? 0,
            Mode = definition is null ? "unknown" : VolumeSpec.FormatMode(definition.Mode),
            SwitchingTo = status?.SwitchingTo is { } to ? VolumeSpec.FormatMode(to) : null,
            ReadOnly = VolumeHealth.IsReadOnly(report),
            Online = status?.Online ?? false,
            State = report.Recovering is not null ? "recovering" : status is null ? "unknown" : status.Online ? "online" : "offline",
            Recovery = report.Progress is { } p ? new RecoveryInfo(p.DoneBytes, p.TotalBytes, p.Percent, p.SecondsLeft) : null,
            OfflineReason = status is { Online: true } ? null : VolumeHealth.Reasons(report).First(),
            Degraded = VolumeHealth.DegradedReason(report),
            Backing = definition?.BackingPath ?? "",
            BackingCreated = definition?.BackingCreated ?? false,
            Generation = status?.Generation ?? 0,
            CachedBytes = (cache?.CachedBlocks ?? 0) * 4096,
            LogBytes = cache?.LogBytes ?? 0,
            Clients = node.Server?.ConnectionsTo(report.Name) ?? 0,
            Health = [.. VolumeHealth.Reasons(report)],
            Cache = cache is null ? null : Describe(cache),
            // The open volume's current set (a promotion changes it in place); else the recorded one.
            Replication = (replicas.SetOf(report.Name) ?? definition?.Replicas) is { } set
                ? new ReplicationInfo(set.Nodes, set.Primary, set.Protocol, set.Epoch, set.IsPrimary(settings.NodeName) ? "primary" : "secondary")
                : null,
        };
    }

    private static CacheInfo Describe(CacheStatistics cache) => new()
    {
        CachedBlocks = cache.CachedBlocks,
        LogBytes = cache.LogBytes,
        LogCapacity = cache.LogCapacity,
        Generation = cache.Generation,
        IndexBytes = cache.IndexBytes,
        BatchesWritten = cache.BatchesWritten,
        Syncs = cache.Syncs,
        SyncPointRecords = cache.SyncPointRecords,
        BlocksDestaged = cache.BlocksDestaged,
        RingWaits = cache.RingWaits,
        RetentionShrinks = cache.RetentionShrinks,
        CorruptRecords = cache.CorruptRecords,
        TornTails = cache.TornTails,
        ScrubTotalBytes = cache.ScrubTotalBytes,
        ScrubVerifiedBytes = cache.ScrubVerifiedBytes,
        BackingFailure = cache.BackingFailure,
        LogFailure = cache.LogFailure,
    };
}
