using System.Net;
using ActorCache.Configuration;
using ActorCache.Hosting;

namespace ActorCache.Replicas;

/// <summary>actorcache.replication: where the node takes its primaries' data connections, and the replicators' limits.</summary>
/// <param name="ResyncRate">Bytes per second per peer; 0: no limit.</param>
/// <param name="Quorum">quorum = majority: a primary of three or more replicas writes only while it reaches a majority.</param>
/// <param name="SuspendWithoutQuorum">on-no-quorum = suspend-io (wait) rather than io-error (fail with EIO).</param>
public sealed record ReplicationSettings(IPEndPoint Listen, long ResyncRate, TimeSpan AckTimeout, long MaxLag, bool Quorum = true, bool SuspendWithoutQuorum = false)
{
    public static readonly ReplicationSettings Default = new(new IPEndPoint(IPAddress.Loopback, 0), 0, TimeSpan.FromSeconds(5), 256L << 20);

    public static ReplicationSettings Read(SettingsReader read, string clusterHost)
    {
        var text = read.String("replication.listen");
        IPEndPoint listen;
        if (text.Length == 0)
        {
            listen = new IPEndPoint(Resolve(clusterHost, "actorcache.cluster.hostname"), 0);
        }
        else if (!ActorCache.Cluster.ClusterAddress.TryParse(text, seed: false, out var address, out var error))
        {
            throw new SettingsException($"actorcache.replication.listen = {text}: {error}");
        }
        else
        {
            listen = new IPEndPoint(Resolve(address!.Host, "actorcache.replication.listen"), address.Port);
        }
        return new ReplicationSettings(listen, ReadResyncRate(read), read.Duration("replication.ack-timeout", TimeSpan.FromMilliseconds(100), "5s"),
            read.Size("replication.max-lag", 1 << 20),
            read.Choice("replication.quorum", ("majority", true), ("off", false)),
            read.Choice("replication.on-no-quorum", ("io-error", false), ("suspend-io", true)));
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

    private static IPAddress Resolve(string host, string key)
    {
        if (IPAddress.TryParse(host.Trim('[', ']'), out var ip)) return ip;
        try
        {
            return Dns.GetHostAddresses(host).FirstOrDefault() ?? throw new SettingsException($"{key}: {host} resolves to no address");
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new SettingsException($"{key}: cannot resolve {host}: {e.Message}");
        }
    }
}
