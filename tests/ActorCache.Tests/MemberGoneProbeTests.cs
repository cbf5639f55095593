using System.Net;
using System.Net.Sockets;
using ActorCache.Cluster;
using Akka.Actor;
using Akka.Cluster;

namespace ActorCache.Tests;

/// <summary>
/// The probe that tells a killed member before the failure detector does: a port that refuses connections means gone, and
/// anything else (a port that accepts, a host that does not resolve) is left to the failure detector; a verdict is never kept.
/// </summary>
public sealed class MemberGoneProbeTests
{
    private static UniqueAddress At(string host, int port, int uid = 1) => new(new Address("akka.tcp", "actorcache", host, port), uid);

    // A loopback refusal comes back at once, but its completion can wait behind a loaded machine's busy threads: one CI
    // run of this suite took the product's 500 ms bound for a closed port, and a late refusal reads as "not known". The
    // verdicts below are about what the port answers, so they give it time; the bound itself is the product's choice.
    private static readonly TimeSpan Patient = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task A_listening_port_is_not_gone_and_the_same_port_closed_is()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var member = At("127.0.0.1", port);
        Assert.False(await MemberGoneProbe.IsGoneAsync(member, CancellationToken.None, Patient));

        listener.Stop();
        Assert.True(await MemberGoneProbe.IsGoneAsync(member, CancellationToken.None, Patient));

        // A verdict holds for the one look: the port taken again (the member's next run, or it was never gone) is not gone.
        var again = new TcpListener(IPAddress.Loopback, port);
        again.Start();
        try
        {
            Assert.False(await MemberGoneProbe.IsGoneAsync(member, CancellationToken.None, Patient));
        }
        finally
        {
            again.Stop();
        }
    }

    [Fact]
    public async Task A_host_that_does_not_resolve_is_not_called_gone()
    {
        Assert.False(await MemberGoneProbe.IsGoneAsync(At("no-such-node.invalid", 4053), CancellationToken.None));
    }
}
