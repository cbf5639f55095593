namespace ActorCache.Volumes;

/// <summary>
/// Closes a node's volumes when it stops: all at once, except that a volume first waits for the clones that read through to
/// one of its snapshots. One after another, a stop took the sum of the closes (each flushes, up to 30 s when a log is slow),
/// past a pod's 90 s grace once a few were slow, and Kubernetes then SIGKILLs the node in the middle of its flushes.
/// </summary>
public static class VolumeShutdown
{
    /// <summary>
    /// Closes every volume of <paramref name="running"/> (in start order) with <paramref name="close"/>; a volume's close starts once
    /// the closes of <paramref name="clonesOf"/> it have ended. The results come newest volume first.
    /// </summary>
    public static async Task<IReadOnlyList<VolumeClosed>> CloseAllAsync(IReadOnlyList<VolumeActorRef> running,
        Func<string, IReadOnlyList<string>> clonesOf, Func<VolumeActorRef, Task<VolumeClosed>> close)
    {
        var closing = new List<(string Name, Task<VolumeClosed> Closed)>();
        // Newest first: a clone starts after its origin, so its close is already under way when the origin looks for it.
        for (var i = running.Count - 1; i >= 0; i--)
        {
            var volume = running[i];
            var clones = clonesOf(volume.Name);
            var first = closing.Where(c => clones.Contains(c.Name)).Select(c => (Task)c.Closed).ToArray();
            closing.Add((volume.Name, CloseAfterAsync(first, volume, close)));
        }
        return await Task.WhenAll(closing.Select(c => c.Closed));
    }

    private static async Task<VolumeClosed> CloseAfterAsync(Task[] first, VolumeActorRef volume, Func<VolumeActorRef, Task<VolumeClosed>> close)
    {
        try
        {
            await Task.WhenAll(first);
        }
        catch
        {
            // A clone whose close failed says so in its own result; its origin closes all the same.
        }
        return await close(volume);
    }
}
