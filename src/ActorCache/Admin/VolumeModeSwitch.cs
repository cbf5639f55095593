using ActorCache.Volumes;
using Akka.Actor;

namespace ActorCache.Admin;

/// <summary>
/// Switches a live volume's mode as an admin operation (the volume actor's <see cref="SetVolumeMode"/>).
/// Leaving write-back drains the log to the backing first, which can take minutes: its progress is
/// the cached bytes that have reached the backing, read from the volume's status while it drains.
/// </summary>
public sealed class VolumeModeSwitch(NodeVolumes volumes, AdminOperations operations)
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>Starts the switch; refusals the volume's definition already shows come back at once as <see cref="VolumeConflictException"/>.</summary>
    public Task<AdminOperation> StartAsync(string name, VolumeMode mode, CancellationToken cancellationToken) =>
        // One change at a time with creates, deletes and resizes: the switch is asked of the volume's actor before the lock goes,
        // so a delete or resize after it finds the volume switching (VolumeStatusReader.ThrowIfSwitchingAsync), never in between.
        volumes.ChangeAsync(() => StartLockedAsync(name, mode, cancellationToken), cancellationToken);

    private async Task<AdminOperation> StartLockedAsync(string name, VolumeMode mode, CancellationToken cancellationToken)
    {
        var volume = volumes.Find(name) ?? throw new VolumeNotFoundException(name);
        volumes.ThrowIfRecovering(name);
        var before = (await VolumeStatusReader.AskAsync(volume, cancellationToken)).Status
                     ?? throw new VolumeConflictException($"volume {name} is busy (no status within {VolumeStatusReader.Timeout.TotalSeconds:0} s); try again");
        if (!before.Online) throw new VolumeConflictException($"volume {name} is offline: {before.Offline}");
        if (before.SwitchingTo is { } to) throw new VolumeConflictException($"volume {name} is switching to {VolumeSpec.FormatMode(to)} already; wait for it to finish");
        if (Volume.LiveSwitchRefusal(before.Definition, mode) is { } refusal) throw new VolumeConflictException(refusal);

        var total = before.Definition.Mode == VolumeMode.WriteBack && mode != VolumeMode.WriteBack ? (before.Cache?.CachedBlocks ?? 0) * 4096 : 0;
        // No timeout: a drain takes as long as the backing needs, and the actor always answers in the end.
        var switching = volume.Actor.Ask<object>(new SetVolumeMode(mode), CancellationToken.None);
        return operations.Start("volume-mode", name, $"switch {name} to {VolumeSpec.FormatMode(mode)}", total, async operation =>
        {
            while (await Task.WhenAny(switching, Task.Delay(PollInterval)) != switching)
            {
                if (total == 0) continue;
                var now = (await VolumeStatusReader.AskAsync(volume, CancellationToken.None)).Status?.Cache;
                if (now is not null) operation.Report(total - now.CachedBlocks * 4096, total);
            }
            if (await switching is VolumeModeRejected rejected) throw new VolumeConflictException(rejected.Reason);
            operation.Report(total, total);
        });
    }
}
