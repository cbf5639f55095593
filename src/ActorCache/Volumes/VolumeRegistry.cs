using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace ActorCache.Volumes;

/// <summary>
/// The node's record of its volumes, event-sourced with Akka.Persistence.Sql so a restarted node
/// serves every volume it had. It only records definitions; opening backings is the volume actors' job.
/// </summary>
public sealed class VolumeRegistry : ReceivePersistentActor
{
    public const string Id = "volume-registry";

    private readonly Dictionary<string, VolumeDefinition> _volumes = new(StringComparer.Ordinal);

    public override string PersistenceId => Id;

    public VolumeRegistry()
    {
        Recover<VolumeDefined>(Apply);
        Recover<VolumeModeChanged>(Apply);
        Command<ChangeVolumeMode>(change =>
        {
            if (!_volumes.TryGetValue(change.Name, out var existing) || existing.Mode == change.Mode) return;
            Persist(new VolumeModeChanged(change.Name, change.Mode), Apply);
        });
        Command<GetVolumes>(_ => Sender.Tell(new VolumeList([.. _volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal)])));
        Command<DefineVolume>(define =>
        {
            var definition = define.Definition;
            if (_volumes.TryGetValue(definition.Name, out var existing))
            {
                Sender.Tell(new VolumeRejected(definition.Name,
                    $"a volume named {definition.Name} already exists (backing {existing.BackingPath})"));
                return;
            }
            if (_volumes.Values.FirstOrDefault(v => v.BackingPath == definition.BackingPath) is { } sharing)
            {
                Sender.Tell(new VolumeRejected(definition.Name,
                    $"backing {definition.BackingPath} already belongs to volume {sharing.Name}"));
                return;
            }
            var replyTo = Sender;
            Persist(new VolumeDefined(definition), defined =>
            {
                Apply(defined);
                replyTo.Tell(new VolumeAccepted(defined.Definition));
            });
        });
    }

    private void Apply(VolumeDefined defined) => _volumes[defined.Definition.Name] = defined.Definition;

    private void Apply(VolumeModeChanged changed)
    {
        if (_volumes.TryGetValue(changed.Name, out var existing)) _volumes[changed.Name] = existing with { Mode = changed.Mode };
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        Log.Error(cause, "metadata store rejected {0}", @event);
        base.OnPersistRejected(cause, @event, sequenceNr);
    }
}

public sealed record GetVolumes
{
    public static readonly GetVolumes Instance = new();
}

public sealed record VolumeList(IReadOnlyList<VolumeDefinition> Volumes);

public sealed record DefineVolume(VolumeDefinition Definition);

public sealed record VolumeAccepted(VolumeDefinition Definition);

public sealed record VolumeRejected(string Name, string Reason);

/// <summary>Record that a volume's mode was switched live, so a restart keeps it.</summary>
public sealed record ChangeVolumeMode(string Name, VolumeMode Mode);

/// <summary>Journal event: a volume's mode changed.</summary>
public sealed record VolumeModeChanged(string Name, VolumeMode Mode);

/// <summary>Journal event: a volume came into being.</summary>
public sealed record VolumeDefined(VolumeDefinition Definition);
