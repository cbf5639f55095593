using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace ActorCache.Volumes;

/// <summary>
/// The node's record of its volumes, event-sourced with Akka.Persistence.Sql so a restarted node
/// serves every volume it had. It only records definitions (a volume defined, its mode switched, grown,
/// deleted); opening backings is the volume actors' job.
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
        Recover<VolumeResized>(Apply);
        Recover<VolumeDeleted>(Apply);
        Recover<VolumeReplicasChanged>(Apply);
        Command<ChangeReplicas>(change =>
        {
            if (!_volumes.ContainsKey(change.Name))
            {
                Sender.Tell(new VolumeRejected(change.Name, $"no volume named {change.Name}"));
                return;
            }
            var replyTo = Sender;
            Persist(new VolumeReplicasChanged(change.Name, change.Replicas), changed =>
            {
                Apply(changed);
                replyTo.Tell(changed);
            });
        });
        Command<ChangeVolumeMode>(change =>
        {
            var replyTo = Sender;
            var changed = new VolumeModeChanged(change.Name, change.Mode);
            if (!_volumes.TryGetValue(change.Name, out var existing) || existing.Mode == change.Mode)
            {
                if (change.Reply) replyTo.Tell(changed);
                return;
            }
            Persist(changed, e =>
            {
                Apply(e);
                if (change.Reply) replyTo.Tell(e);
            });
        });
        Command<ResizeVolume>(resize =>
        {
            if (!_volumes.TryGetValue(resize.Name, out var existing))
            {
                Sender.Tell(new VolumeRejected(resize.Name, $"no volume named {resize.Name}"));
                return;
            }
            if (resize.Size < existing.Size)
            {
                Sender.Tell(new VolumeRejected(resize.Name, $"volume {resize.Name} is {existing.Size} bytes; it only grows"));
                return;
            }
            var replyTo = Sender;
            Persist(new VolumeResized(resize.Name, resize.Size), resized =>
            {
                Apply(resized);
                replyTo.Tell(resized);
            });
        });
        Command<DeleteVolume>(delete =>
        {
            if (!_volumes.ContainsKey(delete.Name))
            {
                Sender.Tell(new VolumeRejected(delete.Name, $"no volume named {delete.Name}"));
                return;
            }
            var replyTo = Sender;
            Persist(new VolumeDeleted(delete.Name), deleted =>
            {
                Apply(deleted);
                replyTo.Tell(deleted);
            });
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

    private void Apply(VolumeResized resized)
    {
        if (_volumes.TryGetValue(resized.Name, out var existing)) _volumes[resized.Name] = existing with { Size = resized.Size };
    }

    private void Apply(VolumeDeleted deleted) => _volumes.Remove(deleted.Name);

    private void Apply(VolumeReplicasChanged changed)
    {
        if (_volumes.TryGetValue(changed.Name, out var existing)) _volumes[changed.Name] = existing with { Replicas = changed.Replicas };
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
/// <param name="Reply">Answer with <see cref="VolumeModeChanged"/> once it is recorded (a mode asked for at start is recorded before the volume serves).</param>
public sealed record ChangeVolumeMode(string Name, VolumeMode Mode, bool Reply = false);

/// <summary>Record that a volume grew online; answered with <see cref="VolumeResized"/> once it is in the journal, or <see cref="VolumeRejected"/>.</summary>
public sealed record ResizeVolume(string Name, long Size);

/// <summary>Forget a volume (its files are gone); answered with <see cref="VolumeDeleted"/> once it is in the journal, or <see cref="VolumeRejected"/>.</summary>
public sealed record DeleteVolume(string Name);

/// <summary>Journal event: a volume grew to <paramref name="Size"/> bytes.</summary>
public sealed record VolumeResized(string Name, long Size);

/// <summary>Journal event: a volume was deleted; a restarted node does not serve it.</summary>
public sealed record VolumeDeleted(string Name);

/// <summary>Journal event: a volume's mode changed.</summary>
public sealed record VolumeModeChanged(string Name, VolumeMode Mode);

/// <summary>Journal event: a volume came into being.</summary>
public sealed record VolumeDefined(VolumeDefinition Definition);

/// <summary>Record a replicated volume's new replica set (a promotion, a protocol switch); answered with <see cref="VolumeReplicasChanged"/> or <see cref="VolumeRejected"/>.</summary>
public sealed record ChangeReplicas(string Name, ActorCache.Replicas.ReplicaSet Replicas);

/// <summary>Journal event: a replicated volume's primary, protocol or epoch changed.</summary>
public sealed record VolumeReplicasChanged(string Name, ActorCache.Replicas.ReplicaSet Replicas);
