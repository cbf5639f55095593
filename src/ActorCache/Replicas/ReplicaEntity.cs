using Akka.Actor;
using Akka.Cluster.Sharding;

namespace ActorCache.Replicas;

/// <summary>
/// The sharded entity of one volume's replica on this node (<c>NODE/VOLUME</c>, placed here by <see cref="ReplicaPlacement"/>):
/// how the other nodes (and this one) reach the replica for control: create, view, adopt a replica set, promote, demote,
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
            if (!_service().Roles.IsOpen(_volume)) Context.Parent.Tell(new Passivate(PoisonPill.Instance));
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
        var service = _service();
        switch (command.Message)
        {
            case CreateReplica m: Answer(ct => service.CreateLocalAsync(m, ct)); break;
            case RemoveReplica m: Answer(ct => service.RemoveLocalAsync(m.Name, ct)); break;
            case GetReplicaView m: Answer(ct => service.ViewAsync(m.Name, ct)); break;
            case AdoptReplicaSet m: Answer(ct => service.AdoptAsync(m.Name, m.Replicas, ct)); break;
            case GetPeerStatus m: Answer(ct => service.LocalPeerStatusAsync(m.Name, ct)); break;
            case PromoteReplica m: Answer(ct => service.PromoteLocalAsync(m.Name, m.Force, ct)); break;
            case DemoteReplica m: Answer(ct => service.DemoteLocalAsync(m.Name, ct)); break;
            case GetBlockChecksums m: Answer(ct => service.ChecksumsAsync(m.Name, m.FromBlock, m.Count, ct)); break;
            case SwitchProtocol m: Answer(ct => service.SwitchProtocolLocalAsync(m.Name, m.Protocol, ct)); break;
            case CountChangesSince m: Answer(ct => service.CountChangesSinceAsync(m, ct)); break;
            default:
                Sender.Tell(new ReplicaRefused(_node, _volume, $"node {_node} does not know the request {command.Message.GetType().Name}"));
                break;
        }
    }

    private void Answer<T>(Func<CancellationToken, Task<T>> work)
    {
        var replyTo = Sender;
        var node = _node;
        var volume = _volume;
        Task.Run(async () =>
        {
            try
            {
                return (object)(await work(CancellationToken.None))!;
            }
            catch (Exception e)
            {
                return new ReplicaRefused(node, volume, e.Message);
            }
        }).PipeTo(replyTo);
    }

    private sealed class IdleTick
    {
        public static readonly IdleTick Instance = new();
    }

    public static Props Props(Func<ReplicatedVolumes> service, string nodeName, string entityId) =>
        Akka.Actor.Props.Create(() => new ReplicaEntity(service, nodeName, entityId));
}
