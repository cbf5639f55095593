using Akka.Actor;
using Akka.Cluster.Sharding;

namespace ActorCache.Replicas;

/// <summary>
/// The sharded entity of one volume's replica on this node (<c>NODE/VOLUME</c>, placed here by <see cref="ReplicaPlacement"/>):
/// how the other nodes (and this one) reach the replica for control: create, promote, demote,
/// switch protocol, peer status, verify checksums, split-brain counts. It translates each <see cref="ReplicaCommand"/> to
/// <see cref="ReplicatedVolumes"/> off its mailbox (a promotion's resync must not hold up a view) and answers with what that
/// gives or a <see cref="ReplicaRefused"/> naming why. It holds no state: the replica's state is on disk and in
/// <see cref="ReplicaRoles"/>, so it stops itself once the replica is no longer open here and starts again on the next message.
/// </summary>
public sealed class ReplicaEntity : ReceiveActor, IWithTimers
{
    private static readonly TimeSpan IdleCheck = TimeSpan.FromSeconds(30);

    private readonly Func<ReplicatedVolumes> _service;
    private readonly string _node;
    private readonly string _volume;
    private readonly long _incarnation;

    public ITimerScheduler Timers { get; set; } = null!;

    public ReplicaEntity(Func<ReplicatedVolumes> service, string nodeName, string entityId)
    {
        _service = service;
        _node = nodeName;
        _volume = ReplicaShards.VolumeOf(entityId);
        _incarnation = Akka.Cluster.Cluster.Get(Context.System).SelfUniqueAddress.Uid;
        Receive<ReplicaCommand>(Handle);
        Receive<IdleTick>(_ =>
        {
            try
            {
                if (!_service().Roles.IsOpen(_volume)) Context.Parent.Tell(new Passivate(PoisonPill.Instance));
            }
            catch (ObjectDisposedException)
            {
                // The node is stopping (its services are gone): the entity stops with it.
            }
        });
    }

    protected override void PreStart() => Timers.StartPeriodicTimer("idle", IdleTick.Instance, IdleCheck);

    private void Handle(ReplicaCommand command)
    {
        if (command.Node != _node || command.Incarnation != _incarnation)
        {
            Sender.Tell(new ReplicaRefused(_node, _volume, command.Node != _node
                ? $"this is node {_node}'s replica of {_volume}, not node {command.Node}'s"
                : $"this message was meant for an earlier run of node {_node} (it waited for the node while that run went away)"));
            return;
        }
        if (command.Expired(DateTimeOffset.UtcNow))
        {
            // Held by a shard region (the shard had no home for a while): its asker has given up and may have acted otherwise.
            Sender.Tell(new ReplicaRefused(_node, _volume, $"{command.Message.GetType().Name} arrived after its asker stopped waiting; it was not carried out"));
            return;
        }
        Func<ReplicatedVolumes, CancellationToken, Task<object>>? work = command.Message switch
        {
            CreateReplica m => async (s, ct) => await s.CreateLocalAsync(m, ct),
            RemoveReplica m => async (s, ct) => await s.RemoveLocalAsync(m.Name, ct),
            GetPeerStatus m => async (s, ct) => await s.LocalPeerStatusAsync(m.Name, ct),
            PromoteReplica m => async (s, ct) => await s.PromoteLocalAsync(m.Name, m.Force, ct),
            DemoteReplica m => async (s, ct) => await s.DemoteLocalAsync(m.Name, ct),
            GetBlockChecksums m => async (s, ct) => await s.ChecksumsAsync(m.Name, m.FromBlock, m.Count, ct),
            SwitchProtocol m => async (s, ct) => await s.SwitchProtocolLocalAsync(m.Name, m.Protocol, ct),
            CountChangesSince m => async (s, ct) => await s.CountChangesSinceAsync(m, ct),
            _ => null,
        };
        if (work is null)
        {
            Sender.Tell(new ReplicaRefused(_node, _volume, $"node {_node} does not know the request {command.Message.GetType().Name}"));
            return;
        }
        var service = _service;
        ReplicaManagerActor.AnswerOffMailbox(Sender, _node, _volume, ct => work(service(), ct));
    }

    private sealed class IdleTick
    {
        public static readonly IdleTick Instance = new();
    }

    public static Props Props(Func<ReplicatedVolumes> service, string nodeName, string entityId) =>
        Akka.Actor.Props.Create(() => new ReplicaEntity(service, nodeName, entityId));
}
