using System.Net;
using ActorCache.Configuration;
using ActorCache.Hosting;

namespace ActorCache.Replicas;

/// <summary>actorcache.replication: where the node takes its primaries' data connections, and the replicators' limits.</summary>
/// <param name="ListenHost">The address to bind and to give peers: an IP binds that address; a host name (a pod's DNS name) binds every address and is given to peers as it is.</param>
/// <param name="ResyncRate">Bytes per second per peer; 0: no limit.</param>
/// <param name="Quorum">quorum = majority: a primary of three or more replicas writes only while it reaches a majority.</param>
/// <param name="SuspendWithoutQuorum">on-no-quorum = suspend-io (wait) rather than io-error (fail with EIO).</param>
/// <param name="AfterSplitBrain">after-split-brain: what this node does when it finds a split brain.</param>
/// <param name="CatchUpRatio">catch-up-ratio: a returning peer is caught up from the log while that is at most this many times its out-of-sync bytes; 0: never.</param>
public sealed record ReplicationSettings(string ListenHost, int ListenPort, long ResyncRate, TimeSpan AckTimeout, long MaxLag, bool Quorum = true,
    bool SuspendWithoutQuorum = false, SplitBrainPolicy AfterSplitBrain = SplitBrainPolicy.Disconnect,
    double CatchUpRatio = ActorCache.Replication.ReplicaLinkOptions.DefaultCatchUpMaxLogRatio)
{
    public static readonly ReplicationSettings Default = new("127.0.0.1", 0, 0, TimeSpan.FromSeconds(5), 256L << 20);

    /// <summary>Where the listener binds: the IP given, else every address (a host name is resolved by the peers, when they connect).</summary>
    public IPEndPoint Bind => new(IPAddress.TryParse(ListenHost.Trim('[', ']'), out var ip) ? ip : IPAddress.Any, ListenPort);

    public static ReplicationSettings Read(SettingsReader read, string clusterHost)
    {
        var text = read.String("replication.listen");
        var (host, port) = (clusterHost, 0);
        if (text.Length > 0)
        {
            if (!ActorCache.Cluster.ClusterAddress.TryParse(text, seed: false, out var address, out var error))
                throw new SettingsException($"actorcache.replication.listen = {text}: {error}");
            (host, port) = (address!.Host, address.Port);
        }
        return new ReplicationSettings(host, port, ReadResyncRate(read), read.Duration("replication.ack-timeout", TimeSpan.FromMilliseconds(100), "5s"),
            read.Size("replication.max-lag", 1 << 20),
            read.Choice("replication.quorum", ("majority", true), ("off", false)),
            read.Choice("replication.on-no-quorum", ("io-error", false), ("suspend-io", true)),
            read.Choice("replication.after-split-brain", [.. Enum.GetValues<SplitBrainPolicy>().Select(p => (SplitBrainVerdict.Name(p), p))]),
            read.Number("replication.catch-up-ratio", 0, 100, "0 (always resync) to 100, e.g. 1.25"));
    }

    /// <summary>A rate such as <c>100M</c> (bytes per second), or 0 for no limit.</summary>
    private static long ReadResyncRate(SettingsReader read)
    {
        var text = read.String("replication.resync-rate");
        if (text.Trim() == "0") return 0;
        if (!Blocks.ByteSize.TryParse(text, out var rate, out var error))
            throw new SettingsException($"actorcache.replication.resync-rate = {text} is not allowed: {error}; give bytes per second (e.g. 100M) or 0 for no limit");
        return rate;
    }
}
