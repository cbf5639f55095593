using Akka.Actor;

namespace ActorCache.Replicas;

/// <summary>
/// Every node's replica manager, at the well-known path <c>/user/replicas</c>: the node-wide requests of replication, where
/// a node takes data connections and the hand-off of its primaries before it leaves, a replica's view and a newer replica set
/// to adopt (read and spread when a node has just died or come back, so they must not wait for a shard home). The rest of
/// what is about one volume's replica goes to that replica's sharded entity (<see cref="ReplicaEntity"/>). Answers off its mailbox, with what
/// <see cref="ReplicatedVolumes"/> gives or a <see cref="ReplicaRefused"/> naming why.
/// </summary>
public sealed class ReplicaManagerActor : ReceiveActor
{
    public const string Name = "replicas";

    public ReplicaManagerActor(Func<ReplicatedVolumes> service, string nodeName)
    {
        Receive<GetDataEndpoint>(_ => Sender.Tell(new DataEndpoint(nodeName, service().Roles.DataAddress)));
        Receive<GetReplicaView>(m => Answer(m.Name, nodeName, ct => service().ViewAsync(m.Name, ct)));
        Receive<AdoptReplicaSet>(m => Answer(m.Name, nodeName, ct => service().AdoptAsync(m.Name, m.Replicas, ct)));
        Receive<HandOffPrimaries>(_ => Answer("", nodeName, async ct => new HandOffs(nodeName, [.. await service().HandOffPrimariesAsync(ct)])));
    }

    private void Answer<T>(string volume, string nodeName, Func<CancellationToken, Task<T>> work) => AnswerOffMailbox(Sender, nodeName, volume, work);

    /// <summary>
    /// Runs a replica request off the actor's mailbox (a promotion's resync must not hold up a view) and pipes what it gives, or a
    /// <see cref="ReplicaRefused"/> naming why it failed, to <paramref name="replyTo"/>. Shared with <see cref="ReplicaEntity"/>.
    /// </summary>
    internal static void AnswerOffMailbox<T>(IActorRef replyTo, string nodeName, string volume, Func<CancellationToken, Task<T>> work) =>
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

    public static Props Props(Func<ReplicatedVolumes> service, string nodeName) => Akka.Actor.Props.Create(() => new ReplicaManagerActor(service, nodeName));
}
