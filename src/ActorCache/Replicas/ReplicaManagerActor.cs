using Akka.Actor;

namespace ActorCache.Replicas;

/// <summary>
/// Every node's replica manager, at the well-known path <c>/user/replicas</c>: how the nodes of a
/// replicated volume reach each other for control (create a replica, what do you have, adopt this
/// replica set, promote, demote). It only translates messages to <see cref="ReplicatedVolumes"/>,
/// off its mailbox, and answers with what that gives or a <see cref="ReplicaRefused"/> naming why.
/// </summary>
public sealed class ReplicaManagerActor : ReceiveActor
{
    public const string Name = "replicas";

    public ReplicaManagerActor(Func<ReplicatedVolumes> service, string nodeName)
    {
        Receive<GetDataEndpoint>(_ => Sender.Tell(new DataEndpoint(nodeName, service().Roles.DataAddress)));
        Receive<CreateReplica>(m => Answer(m.Name, nodeName, ct => service().CreateLocalAsync(m, ct)));
        Receive<RemoveReplica>(m => Answer(m.Name, nodeName, ct => service().RemoveLocalAsync(m.Name, ct)));
        Receive<GetReplicaView>(m => Answer(m.Name, nodeName, ct => service().ViewAsync(m.Name, ct)));
        Receive<AdoptReplicaSet>(m => Answer(m.Name, nodeName, ct => service().AdoptAsync(m.Name, m.Replicas, ct)));
        Receive<GetPeerStatus>(m => Answer(m.Name, nodeName, ct => service().LocalPeerStatusAsync(m.Name, ct)));
        Receive<PromoteReplica>(m => Answer(m.Name, nodeName, ct => service().PromoteLocalAsync(m.Name, m.Force, ct)));
        Receive<DemoteReplica>(m => Answer(m.Name, nodeName, ct => service().DemoteLocalAsync(m.Name, ct)));
        Receive<GetBlockChecksums>(m => Answer(m.Name, nodeName, ct => service().ChecksumsAsync(m.Name, m.FromBlock, m.Count, ct)));
        Receive<SwitchProtocol>(m => Answer(m.Name, nodeName, ct => service().SwitchProtocolLocalAsync(m.Name, m.Protocol, ct)));
        Receive<CountChangesSince>(m => Answer(m.Name, nodeName, ct => service().CountChangesSinceAsync(m, ct)));
        Receive<HandOffPrimaries>(_ => Answer("", nodeName, async ct => new HandOffs(nodeName, [.. await service().HandOffPrimariesAsync(ct)])));
    }

    private void Answer<T>(string volume, string nodeName, Func<CancellationToken, Task<T>> work)
    {
        var replyTo = Sender;
        Task.Run(async () =>
        {
            try
            {
                return (object)(await work(CancellationToken.None))!;
            }
            catch (Exception e)
            {
                return new ReplicaRefused(nodeName, volume, e.Message);
            }
        }).PipeTo(replyTo);
    }

    public static Props Props(Func<ReplicatedVolumes> service, string nodeName) => Akka.Actor.Props.Create(() => new ReplicaManagerActor(service, nodeName));
}
