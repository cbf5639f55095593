using System.Collections.Immutable;
using ActorCache.Admin.Api;
using ActorCache.Hosting;
using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cluster;

/// <summary>
/// The cluster as this node sees it, for the admin API: every member with its node name (its
/// <c>node:NAME</c> role), status, reachability and the volumes it serves (asked of each reachable
/// member's <see cref="ClusterNodeActor"/> with a short timeout, all at once, so an unresponsive member
/// costs at most that), and the two changes an operator makes: leave and down.
/// </summary>
public sealed class ClusterMembers(ActorSystem system, NodeSettings settings, ILogger<ClusterMembers> logger)
{
    public const string NameRolePrefix = "node:";
    public const string NotJoined = "NotJoined";
    /// <summary>How long a member gets to say what it serves.</summary>
    public static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(2);

    private Akka.Cluster.Cluster Cluster => Akka.Cluster.Cluster.Get(system);

    /// <summary>The member's node name, from its role; its address when it has none.</summary>
    public static string NameOf(Member member) =>
        member.Roles.FirstOrDefault(r => r.StartsWith(NameRolePrefix, StringComparison.Ordinal)) is { } role ? role[NameRolePrefix.Length..] : member.Address.ToString();

    /// <summary>Whether <paramref name="member"/> is in its cluster, or on its way in or out (not down, not removed).</summary>
    public static bool IsIn(Member member) =>
        member.Status is MemberStatus.Joining or MemberStatus.WeaklyUp or MemberStatus.Up or MemberStatus.Leaving or MemberStatus.Exiting;

    /// <summary>A member's address with its incarnation: a node restarted on its address is another member.</summary>
    public static string Describe(UniqueAddress member) => $"{member.Address}#{member.Uid}";

    /// <summary>Whether this node is a member of a cluster in a state that counts as joined.</summary>
    public bool IsJoined => SelfMember() is { Status: MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Leaving or MemberStatus.Exiting };

    /// <summary>This node's entry in the membership, or null while no cluster has accepted it.</summary>
    public Member? SelfMember()
    {
        var cluster = Cluster;
        return cluster.State.Members.FirstOrDefault(m => m.UniqueAddress.Equals(cluster.SelfUniqueAddress));
    }

    public async Task<IReadOnlyList<MemberInfo>> ReadAsync(CancellationToken cancellationToken)
    {
        var cluster = Cluster;
        var state = cluster.State;
        var unreachable = state.Unreachable.Select(m => m.UniqueAddress).ToImmutableHashSet();
        var members = state.Members.ToList();
        var infos = await Task.WhenAll(members.Select(async m =>
        {
            var reachable = !unreachable.Contains(m.UniqueAddress);
            var volumes = reachable ? await VolumesOfAsync(m.Address, cancellationToken) : null;
            return new MemberInfo
            {
                Node = NameOf(m),
                Address = m.Address.ToString(),
                Status = m.Status.ToString(),
                Reachable = reachable,
                Roles = [.. m.Roles.Where(r => !r.StartsWith(NameRolePrefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal)],
                Leader = m.Address.Equals(state.Leader),
                Self = m.UniqueAddress.Equals(cluster.SelfUniqueAddress),
                Volumes = volumes ?? [],
                VolumesKnown = volumes is not null,
            };
        }));
        var list = infos.ToList();
        if (!list.Any(m => m.Self))
        {
            // Not accepted into a cluster (yet): the node still says who it is and what it serves.
            var volumes = await VolumesOfAsync(cluster.SelfAddress, cancellationToken);
            list.Insert(0, new MemberInfo
            {
                Node = settings.NodeName, Address = cluster.SelfAddress.ToString(), Status = NotJoined, Reachable = true, Roles = ["storage"],
                Leader = false, Self = true, Volumes = volumes ?? [], VolumesKnown = volumes is not null,
            });
        }
        return list;
    }

    private async Task<string[]?> VolumesOfAsync(Address address, CancellationToken cancellationToken)
    {
        try
        {
            return (await ClusterNodeActor.AskAsync(system, address, AskTimeout, cancellationToken)).Volumes;
        }
        catch (AskTimeoutException)
        {
            return null;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogDebug(e, "asking {Address} for its volumes failed", address);
            return null;
        }
    }

    /// <summary>
    /// The member a user means by <paramref name="node"/>: its node name, its address (HOST:PORT or
    /// akka.tcp://actorcache@HOST:PORT). Of several members with one name (a node restarted on another port
    /// while its old incarnation is still listed), <paramref name="prefer"/> picks.
    /// </summary>
    public Member Find(string node, Func<Member, bool> prefer)
    {
        var state = Cluster.State;
        var members = state.Members.Where(m => m.Status != MemberStatus.Removed).ToList();
        var byAddress = ClusterAddress.TryParse(node, seed: true, out var address, out _)
            ? members.Where(m => m.Address.ToString() == address!.AkkaAddress).ToList()
            : [];
        var matches = byAddress.Count > 0 ? byAddress : members.Where(m => NameOf(m) == node).ToList();
        if (matches.Count > 1) matches = matches.Where(prefer).ToList() is { Count: > 0 } preferred ? preferred : matches;
        return matches.Count switch
        {
            0 => throw new ClusterMemberNotFoundException(
                $"no member of the cluster is named or at '{node}'; 'actorcache cluster show' lists them ({string.Join(", ", members.Select(NameOf).Distinct())})"),
            1 => matches[0],
            _ => throw new ClusterChangeRefusedException(
                $"{matches.Count} members are named '{node}' ({string.Join(", ", matches.Select(m => m.Address))}); give the address of the one you mean"),
        };
    }

    public bool IsReachable(Member member) => !Cluster.State.Unreachable.Any(m => m.UniqueAddress.Equals(member.UniqueAddress));

    /// <summary>Asks another member to leave gracefully (it then stops itself, flushing its volumes as on SIGTERM).</summary>
    public MemberInfo Leave(Member member)
    {
        if (!IsReachable(member))
            throw new ClusterChangeRefusedException(
                $"member {NameOf(member)} ({member.Address}) is unreachable, so it cannot leave gracefully; if it is gone for good, " +
                $"use 'actorcache cluster down {NameOf(member)}'");
        logger.LogInformation("asking member {Node} ({Address}) to leave the cluster", NameOf(member), member.Address);
        Cluster.Leave(member.Address);
        return Describe(member, MemberStatus.Leaving.ToString());
    }

    /// <summary>Marks an unreachable member down: the others stop waiting for it and remove it.</summary>
    public MemberInfo Down(Member member)
    {
        if (IsReachable(member))
            throw new ClusterChangeRefusedException(
                $"member {NameOf(member)} ({member.Address}) is reachable; down is for a member that is gone (crashed, cut off). " +
                $"To take it out, use 'actorcache cluster leave {NameOf(member)}'");
        logger.LogWarning("marking member {Node} ({Address}) down by request", NameOf(member), member.Address);
        Cluster.Down(member.Address);
        return Describe(member, MemberStatus.Down.ToString());
    }

    public MemberInfo Describe(Member member, string status) => new()
    {
        Node = NameOf(member),
        Address = member.Address.ToString(),
        Status = status,
        Reachable = IsReachable(member),
        Roles = [.. member.Roles.Where(r => !r.StartsWith(NameRolePrefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal)],
        Leader = member.Address.Equals(Cluster.State.Leader),
        Self = member.UniqueAddress.Equals(Cluster.SelfUniqueAddress),
        Volumes = [],
        VolumesKnown = false,
    };

    /// <summary>This node as a member entry (for a leave of itself).</summary>
    public MemberInfo DescribeSelf(string status) => SelfMember() is { } self
        ? Describe(self, status)
        : new MemberInfo
        {
            Node = settings.NodeName, Address = Cluster.SelfAddress.ToString(), Status = status, Reachable = true, Roles = ["storage"],
            Leader = false, Self = true, Volumes = [], VolumesKnown = false,
        };
}
