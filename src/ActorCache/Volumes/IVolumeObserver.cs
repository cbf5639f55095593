namespace ActorCache.Volumes;

/// <summary>Told by each volume actor when its volume is open (before the front serves it), before it closes and once it is closed: replication attaches here.</summary>
public interface IVolumeObserver
{
    void Opened(Volume volume);

    /// <summary>The volume is about to close (withdrawn from the front already): nothing may write to it from outside any more.</summary>
    Task ClosingAsync(string volume);

    /// <summary>The volume is closed: its last batches are written, so whoever followed its log can let go now.</summary>
    Task ClosedAsync(string volume);
}
