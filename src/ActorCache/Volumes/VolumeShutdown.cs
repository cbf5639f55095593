namespace ActorCache.Volumes;

/// <summary>
/// Closes a node's volumes when it stops: all at once, except that a volume first waits for the clones that read through to
/// one of its snapshots. One after another, a stop took the sum of the closes (each flushes, up to 30 s when a log is slow;
/// a replica's links wait up to the ack timeout for a slow peer), past a pod's 90 s grace once a few were slow, and Kubernetes
/// then SIGKILLs the node in the middle of its flushes.
/// </summary>
public static class VolumeShutdown
{
    /// <summary>
    /// Closes every volume of <paramref name="running"/> (in start order) with <paramref name="close"/>; a volume's close starts once
    /// the closes of <paramref name="clonesOf"/> it have ended. A close that throws is reported as a volume that may have lost
    /// writes. The results come newest volume first.
    /// </summary>
    public static async Task<IReadOnlyList<VolumeClosed>> CloseAllAsync(IReadOnlyList<VolumeActorRef> running,
        Func<string, IReadOnlyList<string>> clonesOf, Func<VolumeActorRef, Task<VolumeClosed>> close)
    {
        var ended = running.ToDictionary(v => v.Name, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), StringComparer.Ordinal);
        var closing = new List<Task<VolumeClosed>>();
        // Newest first, the order of the closes one after another before.
        for (var i = running.Count - 1; i >= 0; i--)
        {
            var volume = running[i];
            var first = clonesOf(volume.Name).Where(ended.ContainsKey).Select(c => ended[c].Task).ToList();
            closing.Add(CloseAfterAsync(first, volume, close, ended[volume.Name]));
        }
        return await Task.WhenAll(closing);
    }

    private static async Task<VolumeClosed> CloseAfterAsync(List<Task> first, VolumeActorRef volume, Func<VolumeActorRef, Task<VolumeClosed>> close,
        TaskCompletionSource ended)
    {
        try
        {
            await Task.WhenAll(first);
            return await close(volume);
        }
        catch (Exception e)
        {
            return new VolumeClosed(volume.Name, VolumeClosed.UnknownBytes, $"closing it failed: {e.Message}");
        }
        finally
        {
            ended.TrySetResult();
        }
    }
}
