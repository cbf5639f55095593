using Akka.Actor;
using Akka.Event;
using Akka.Persistence;

namespace ActorCache.Snapshots;

/// <summary>
/// A kept snapshot as the node records it: which volume, its name, and the sync point it names
/// (generation, batch time, the batch's sequence number and where it ends in the log), so it can be
/// protected again after a restart even when the log no longer covers it.
/// </summary>
public sealed record SnapshotRecord(string Volume, string Name, long Generation, long TimeMicros, long Sequence, long EndAddress, DateTimeOffset Created)
{
    /// <summary>Set when the snapshot was given up to stay within cache.snapshot-space (policy expire-oldest): it no longer reads.</summary>
    public DateTimeOffset? Expired { get; init; }

    public ActorCache.Cache.SyncPoint Point => new(Generation, TimeMicros, Sequence, EndAddress);

    /// <summary>The NBD export that serves it.</summary>
    public string Export => $"{Volume}@{Name}";
}

/// <summary>
/// The node's record of its kept snapshots, event-sourced with Akka.Persistence.Sql (SQLite by default,
/// PostgreSQL by configuration) like the volume registry: a snapshot exists once its event is persisted,
/// and a restarted node protects every one again.
/// </summary>
public sealed class SnapshotRegistry : ReceivePersistentActor
{
    public const string Id = "snapshot-registry";

    private readonly Dictionary<(string Volume, string Name), SnapshotRecord> _snapshots = [];

    public override string PersistenceId => Id;

    public SnapshotRegistry()
    {
        Recover<SnapshotKept>(e => _snapshots[(e.Snapshot.Volume, e.Snapshot.Name)] = e.Snapshot);
        Recover<SnapshotDeleted>(e => _snapshots.Remove((e.Volume, e.Name)));
        Recover<SnapshotExpired>(Apply);
        Command<ExpireSnapshots>(expire =>
        {
            var expired = _snapshots.Values.Where(s => s.Volume == expire.Volume && s.Sequence == expire.Sequence && s.Expired is null)
                .Select(s => new SnapshotExpired(s.Volume, s.Name, DateTimeOffset.UtcNow)).ToList();
            PersistAll(expired, Apply);
        });
        Command<ListSnapshots>(_ => Sender.Tell(new SnapshotList([.. _snapshots.Values
            .OrderBy(s => s.Volume, StringComparer.Ordinal).ThenBy(s => s.Generation).ThenBy(s => s.Name, StringComparer.Ordinal)])));
        Command<KeepSnapshot>(keep =>
        {
            var snapshot = keep.Snapshot;
            if (_snapshots.ContainsKey((snapshot.Volume, snapshot.Name)))
            {
                Sender.Tell(new SnapshotRefused($"volume {snapshot.Volume} already has a snapshot named {snapshot.Name}"));
                return;
            }
            var replyTo = Sender;
            Persist(new SnapshotKept(snapshot), e =>
            {
                _snapshots[(e.Snapshot.Volume, e.Snapshot.Name)] = e.Snapshot;
                replyTo.Tell(new SnapshotRecorded(e.Snapshot));
            });
        });
        Command<DeleteSnapshot>(delete =>
        {
            if (!_snapshots.ContainsKey((delete.Volume, delete.Name)))
            {
                Sender.Tell(new SnapshotRefused($"volume {delete.Volume} has no snapshot named {delete.Name}"));
                return;
            }
            var replyTo = Sender;
            Persist(new SnapshotDeleted(delete.Volume, delete.Name), e =>
            {
                var removed = _snapshots[(e.Volume, e.Name)];
                _snapshots.Remove((e.Volume, e.Name));
                replyTo.Tell(new SnapshotRecorded(removed));
            });
        });
    }

    private void Apply(SnapshotExpired expired)
    {
        if (_snapshots.TryGetValue((expired.Volume, expired.Name), out var snapshot))
            _snapshots[(expired.Volume, expired.Name)] = snapshot with { Expired = expired.At };
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        Log.Error(cause, "metadata store rejected {0}", @event);
        base.OnPersistRejected(cause, @event, sequenceNr);
    }
}

public sealed record ListSnapshots
{
    public static readonly ListSnapshots Instance = new();
}

public sealed record SnapshotList(IReadOnlyList<SnapshotRecord> Snapshots);

/// <summary>Record a snapshot (its point is protected already); answered <see cref="SnapshotRecorded"/> once durable, or <see cref="SnapshotRefused"/>.</summary>
public sealed record KeepSnapshot(SnapshotRecord Snapshot);

public sealed record DeleteSnapshot(string Volume, string Name);

public sealed record SnapshotRecorded(SnapshotRecord Snapshot);

public sealed record SnapshotRefused(string Reason);

/// <summary>Journal event: a snapshot was kept.</summary>
public sealed record SnapshotKept(SnapshotRecord Snapshot);

/// <summary>Every snapshot of <paramref name="Volume"/> at batch <paramref name="Sequence"/> expired (its point was given up).</summary>
public sealed record ExpireSnapshots(string Volume, long Sequence);

/// <summary>Journal event: a snapshot expired.</summary>
public sealed record SnapshotExpired(string Volume, string Name, DateTimeOffset At);

/// <summary>Journal event: a snapshot was deleted.</summary>
public sealed record SnapshotDeleted(string Volume, string Name);
