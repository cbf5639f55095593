using System.Net;
using System.Net.Sockets;

namespace ActorCache.Replication.Tests;

/// <summary>
/// Disposing a link is what a primary that is demoted or gives up its data after a split brain does to each of its links.
/// A link caught in the middle of connecting (its peer slow to answer, or refusing) must stop quietly: its cancelled
/// handshake once escaped the link's loop, and `volume discard-my-data` failed with "The operation was canceled".
/// </summary>
public sealed class LinkDisposeTests
{
    [Fact]
    public async Task A_link_disposed_while_its_handshake_waits_for_the_peer_stops_without_an_error()
    {
        await using var f = new ReplicaFixture();
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        silent.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        silent.Listen();
        f.Via = (IPEndPoint)silent.LocalEndPoint!; // a peer that accepts the connection and never answers the hello
        var link = f.StartLink(ReplicationProtocol.C, ackTimeout: TimeSpan.FromSeconds(30));
        using var accepted = await silent.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200); // the link sent its hello and waits for the reply
        await link.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(PeerConnection.StandAlone, link.Status.Connection);
    }
}
