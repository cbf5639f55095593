using ActorCache.Volumes;
using Akka.Actor;

namespace ActorCache.Admin;

/// <summary>One volume's answer to a status request, or null when its actor did not answer in time.</summary>
/// <param name="Recovering">How far the volume's open is, while it opens (its actor answers nothing then).</param>
/// <param name="Progress">The same in numbers.</param>
public sealed record VolumeReport(string Name, VolumeStatus? Status, string? Recovering = null, RecoveryProgress? Progress = null);

/// <summary>
/// Asks every volume actor for its status, all at once, with a short timeout. This runs per scrape or
/// health probe, never per I/O request: the numbers are counters the cache keeps anyway.
/// </summary>
public sealed class VolumeStatusReader(NodeVolumes volumes)
{
    /// <summary>Long enough for a busy mailbox, short enough for a Prometheus scrape or a Kubernetes probe.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);

    public async Task<IReadOnlyList<VolumeReport>> ReadAsync(CancellationToken cancellationToken) =>
        await Task.WhenAll(volumes.Running.Select(v => AskAsync(v, cancellationToken)));

    /// <summary>
    /// Refuses a change (delete, resize) while the volume switches its mode: its actor holds every other message until the
    /// switch ends, which may take minutes of draining, so the change would time out and then run anyway, or a deletion remove
    /// files under a volume still open.
    /// </summary>
    public static async Task ThrowIfSwitchingAsync(NodeVolumes volumes, string name, CancellationToken cancellationToken)
    {
        if (volumes.Find(name) is not { } running) return;
        if ((await AskAsync(running, cancellationToken)).Status?.SwitchingTo is { } to)
            throw new VolumeConflictException($"volume {name} is switching to {VolumeSpec.FormatMode(to)}; wait for the switch to finish " +
                                              $"('actorcache volume status {name}' shows it)");
    }

    /// <summary>One volume's report.</summary>
    public static async Task<VolumeReport> AskAsync(VolumeActorRef volume, CancellationToken cancellationToken)
    {
        if (volume.Recovery is { Finished: false } recovery)
        {
            var progress = recovery.Progress();
            return new VolumeReport(volume.Name, null, progress.Describe(), progress);
        }
        try
        {
            var status = await volume.Actor.Ask<VolumeStatus>(GetVolumeStatus.Instance, Timeout, cancellationToken);
            return new VolumeReport(volume.Name, status);
        }
        catch (AskTimeoutException)
        {
            // An actor opening or closing its volume (replaying or flushing a log) answers nothing meanwhile.
            return new VolumeReport(volume.Name, null);
        }
    }
}
