using System.Net;
using System.Net.Sockets;
using ActorCache.Cluster;
using Akka.Actor;
using Akka.Cluster;

namespace ActorCache.Tests;

/// <summary>
/// The probe that tells a killed member before the failure detector does: a port that refuses connections means gone, and
/// anything else (a port that accepts, a host that does not resolve) is left to the failure detector.
/// </summary>
public sealed class MemberGoneProbeTests
{
    private static UniqueAddress At(string host, int port, int uid = 1) => new(new Address("akka.tcp", "actorcache", host, port), uid);

    [Fact]
    public async Task A_listening_port_is_not_gone_and_the_same_port_closed_is()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var probe = new MemberGoneProbe();
        var member = At("127.0.0.1", port);

        Assert.False(await probe.IsGoneAsync(member, CancellationToken.None));
        Assert.False(probe.KnownGone(member));

        listener.Stop();
        Assert.True(await probe.IsGoneAsync(member, CancellationToken.None));
        Assert.True(probe.KnownGone(member));
        // Another incarnation at that address is not known gone by it.
        Assert.False(probe.KnownGone(At("127.0.0.1", port, uid: 2)));

        // Forgotten once the cluster no longer lists it; kept while it does.
        probe.Prune([member]);
        Assert.True(probe.KnownGone(member));
        probe.Prune([]);
        Assert.False(probe.KnownGone(member));
    }

    [Fact]
    public async Task A_host_that_does_not_resolve_is_not_called_gone()
    {
        var probe = new MemberGoneProbe();
        var member = At("no-such-node.invalid", 4053);
        Assert.False(await probe.IsGoneAsync(member, CancellationToken.None));
        Assert.False(probe.KnownGone(member));
    }
}
