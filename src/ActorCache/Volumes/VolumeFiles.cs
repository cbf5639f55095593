using ActorCache.Hosting;

namespace ActorCache.Volumes;

/// <summary>The files a volume owns on this node: its log directory, and its backing when the node created it (never one the user gave).</summary>
public static class VolumeFiles
{
    public static string LogDirectory(VolumeDefinition definition, CacheSettings cache) => cache.OptionsFor(definition.Name).LogDirectory;

    /// <summary>
    /// Removes them (what is missing already is fine); returns whether a backing file was removed. The
    /// backing goes first: a crash part-way leaves a volume whose backing is missing, which comes up
    /// offline, never one that serves its backing without its log or a clone without its map.
    /// </summary>
    public static bool Remove(VolumeDefinition definition, CacheSettings cache)
    {
        var removed = definition.BackingCreated && File.Exists(definition.BackingPath);
        if (removed) File.Delete(definition.BackingPath);
        if (definition.Origin is not null) File.Delete(definition.CloneMapPath);
        var log = LogDirectory(definition, cache);
        if (Directory.Exists(log)) Directory.Delete(log, recursive: true);
        return removed;
    }
}
