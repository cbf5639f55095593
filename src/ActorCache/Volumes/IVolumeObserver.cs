namespace ActorCache.Volumes;

/// <summary>Told by each volume actor when its volume is open (before the front serves it) and before it closes: replication attaches here.</summary>
public interface IVolumeObserver
{
    void Opened(Volume volume);

    Task ClosingAsync(string volume);
}
