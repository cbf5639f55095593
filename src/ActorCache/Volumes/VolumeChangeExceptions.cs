using ActorCache.Hosting;

namespace ActorCache.Volumes;

/// <summary>A change asked for a volume this node does not have (the admin API answers 404).</summary>
public sealed class VolumeNotFoundException(string name) : Exception($"no volume named {name}; 'actorcache volume list' shows the node's volumes")
{
    public string Name { get; } = name;
}

/// <summary>
/// A change that conflicts with what the node has: the name or the backing taken, clients connected,
/// a smaller size, no log space left (the admin API answers 409; a start reports it like any bad setting).
/// </summary>
public sealed class VolumeConflictException(string message) : SettingsException(message);
