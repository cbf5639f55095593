using System.Collections.Concurrent;
using System.Net;
using ActorCache.Cluster;
using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replicas;

/// <summary>
/// Finds other nodes by name through the cluster: their replicas' sharded entities (<see cref="ReplicaEntity"/>), their
/// replica managers (<see cref="ReplicaManagerActor"/> at <c>/user/replicas</c>) and their replication data endpoints. A node that is not an Up, reachable
/// member has no endpoint: its links wait and the primary tracks what it misses.
/// </summary>
public sealed class PeerEndpoints(ActorSystem system, ILogger<PeerEndpoints> logger)
{
    public static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);
    // An answer from a live member takes milliseconds; past this, whether its process is still there is worth a look.
    private static readonly TimeSpan FirstProbeAfter = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan ProbeEvery = TimeSpan.FromMilliseconds(500);
    private readonly ConcurrentDictionary<string, (UniqueAddress Member, IPEndPoint Endpoint)> _known = new(StringComparer.Ordinal);

    private Akka.Cluster.Cluster Cluster => Akka.Cluster.Cluster.Get(system);

    /// <summary>
    /// The Up, reachable member named <paramref name="node"/>, or null. Of two (a second node started under a name in use,
    /// until <see cref="DuplicateNameGuard"/> makes it leave), the oldest: the one the name belonged to first.
    /// </summary>
    public Member? MemberOf(string node)
    {
        var state = Cluster.State;
        return state.Members
            .Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp && ClusterMembers.NameOf(m) == node)
            .Where(m => !state.Unreachable.Any(u => u.UniqueAddress.Equals(m.UniqueAddress)))
            .OrderBy(m => m, Member.AgeOrdering)
            .FirstOrDefault();
    }

    private volatile HashSet<string> _reachable = [];
    private long _reachableAt;

    /// <summary>
    /// Whether <paramref name="node"/> is an Up member this node's failure detector reaches: the cluster's
    /// heartbeats tell a silent peer (hung, cut off) even when no data is on the way to it. Looked up at
    /// most every 250 ms (FLUSH asks it on a primary with quorum).
    /// </summary>
    public bool IsReachable(string node)
    {
        var now = Environment.TickCount64;
        if (now - Volatile.Read(ref _reachableAt) > 250)
        {
            _reachable = [.. UpNodes()];
            Volatile.Write(ref _reachableAt, now);
        }
        return _reachable.Contains(node);
    }

    /// <summary>Whether this node is an Up member of a cluster.</summary>
    public bool SelfUp() => Cluster.SelfMember.Status is MemberStatus.Up or MemberStatus.WeaklyUp;

    /// <summary>Whether a member named <paramref name="node"/> is in this node's cluster or on its way in or out, reachable or not.</summary>
    public bool IsMember(string node) => Cluster.State.Members.Any(m => ClusterMembers.IsIn(m) && ClusterMembers.NameOf(m) == node);

    /// <summary>Every member's node name that is Up and reachable now.</summary>
    public IReadOnlyList<string> UpNodes()
    {
        var state = Cluster.State;
        return [.. state.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp)
            .Where(m => !state.Unreachable.Any(u => u.UniqueAddress.Equals(m.UniqueAddress)))
            .Select(ClusterMembers.NameOf).Distinct().Order(StringComparer.Ordinal)];
    }

    public ActorSelection ManagerOf(Member member) => system.ActorSelection(new RootActorPath(member.Address) / "user" / ReplicaManagerActor.Name);

    private IActorRef Replicas => _replicas ??= Akka.Cluster.Sharding.ClusterSharding.Get(system).ShardRegion(ReplicaShards.TypeName);
    private IActorRef? _replicas;

    /// <summary>
    /// Asks <paramref name="node"/>: its replica's entity for an <see cref="IReplicaCommand"/> (through this node's shard region),
    /// else its replica manager. Null when the node is not an Up, reachable member, or does not answer in time; with
    /// <paramref name="silenceThrows"/>, a member that is up but does not answer in time throws <see cref="PeerSilentException"/>
    /// instead (what it holds is unknown, not absent: a decision that needs it must wait). A member whose process is found gone
    /// while the answer is awaited (<see cref="MemberGoneProbe"/>) counts as not up, before the failure detector says so.
    /// </summary>
    public async Task<T?> AskAsync<T>(string node, object message, CancellationToken ct, TimeSpan? timeout = null, bool silenceThrows = false) where T : class
    {
        if (MemberOf(node) is not { } member) return null;
        var wait = timeout ?? AskTimeout;
        try
        {
            var asking = message is IReplicaCommand command
                ? Replicas.Ask<object>(new ReplicaCommand(node, member.UniqueAddress.Uid, command)
                {
                    DeadlineUnixMs = DateTimeOffset.UtcNow.Add(wait).ToUnixTimeMilliseconds(),
                }, wait, ct)
                : ManagerOf(member).Ask<object>(message, wait, ct);
            var reply = await AnswerUnlessGoneAsync(asking, member, ct);
            if (reply is T answer) return answer;
            if (reply is ReplicaRefused refused) throw new ReplicaRefusedException(refused.Reason);
            return null;
        }
        catch (AskTimeoutException)
        {
            if (silenceThrows && MemberOf(node) is not null)
                throw new PeerSilentException($"node {node} is up but did not answer within {wait.TotalSeconds:0} s");
            return null;
        }
    }

    /// <summary>
    /// The answer to <paramref name="asking"/>, or null as soon as <paramref name="member"/>'s process is found gone: a node killed
    /// a moment ago stays Up to the cluster for seconds, and a promotion or a restarted primary's confirmation waited all of that
    /// for an answer that could not come.
    /// </summary>
    private async Task<object?> AnswerUnlessGoneAsync(Task<object> asking, Member member, CancellationToken ct)
    {
        for (var wait = FirstProbeAfter; ; wait = ProbeEvery)
        {
            if (await Task.WhenAny(asking, Task.Delay(wait, ct)) == asking) return await asking;
            ct.ThrowIfCancellationRequested();
            // The ask's own timeout still rules (a health probe's is 500 ms): an answer, or the timeout, while the probe looks wins.
            var probe = MemberGoneProbe.IsGoneAsync(member.UniqueAddress, ct);
            if (await Task.WhenAny(asking, probe) == asking) return await asking;
            if (!await probe) continue;
            _ = asking.ContinueWith(static t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted); // its timeout, observed
            logger.LogInformation("node {Node} at {Address} refuses connections: its process is gone (the cluster has not seen it yet); not waiting for its answer",
                ClusterMembers.NameOf(member), member.Address);
            return null;
        }
    }

    /// <summary>The node's replication data endpoint, asked once per incarnation of the member.</summary>
    public async ValueTask<EndPoint?> ResolveAsync(string node, CancellationToken ct)
    {
        if (MemberOf(node) is not { } member) return null;
        if (_known.TryGetValue(node, out var known) && known.Member.Equals(member.UniqueAddress)) return known.Endpoint;
        try
        {
            var answer = await ManagerOf(member).Ask<DataEndpoint>(GetDataEndpoint.Instance, AskTimeout, ct);
            if (answer.Address is null) return null;
            if (!IPEndPoint.TryParse(answer.Address, out var endpoint))
            {
                // HOST:PORT with a host name (a pod's DNS name): resolved now, and again for the member's next incarnation.
                var colon = answer.Address.LastIndexOf(':');
                if (colon <= 0 || !int.TryParse(answer.Address[(colon + 1)..], out var port)) return null;
                var addresses = await Dns.GetHostAddressesAsync(answer.Address[..colon], ct);
                if (addresses.Length == 0) return null;
                endpoint = new IPEndPoint(addresses[0], port);
            }
            _known[node] = (member.UniqueAddress, endpoint);
            return endpoint;
        }
        catch (System.Net.Sockets.SocketException e)
        {
            logger.LogDebug("node {Node}'s data address does not resolve yet: {Reason}", node, e.Message);
            return null;
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            logger.LogDebug("node {Node} did not say where it takes data connections: {Reason}", node, e.Message);
            return null;
        }
    }
}

/// <summary>Another node refused what was asked of it; the message says why.</summary>
public sealed class ReplicaRefusedException(string message) : Exception(message);

/// <summary>
/// An Up, reachable member did not answer in time (its shard region or entity not reachable yet, or the node overloaded): what it
/// holds is unknown. Decisions that must not overlook a replica (confirming a restarted primary, promoting) wait for it.
/// </summary>
public sealed class PeerSilentException(string message) : Exception(message);
