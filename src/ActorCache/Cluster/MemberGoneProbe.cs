using System.Net.Sockets;
using Akka.Cluster;

namespace ActorCache.Cluster;

/// <summary>
/// Tells that a member's process is gone before the cluster's failure detector does. When a node is killed its kernel refuses
/// connections to its remoting port at once, while the heartbeats take seconds (the acceptable heartbeat pause, more on a
/// loaded machine) to call it unreachable; a promotion after a primary's crash waited all of that for an answer that could not
/// come. Only a refusal counts as gone: a port that accepts (a live process, even a stopped one, or a new incarnation on the
/// same port) or does not answer (a cut link, a host that is gone) is left to the failure detector. An actor system closes
/// its remoting port only when it terminates. A verdict holds for the one ask that looked, never longer: a member that
/// refused once (a firewall's reject, say) and answers later is not taken for gone.
/// </summary>
public static class MemberGoneProbe
{
    /// <summary>How long a look waits for the port's answer. A refusal on a LAN comes back in well under a millisecond, but
    /// on a loaded machine its completion can wait behind busy threads; a late refusal is only read as "not known".</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromMilliseconds(500);

    /// <summary>Whether the member's remoting port refuses connections now (and so that run of it is gone). <paramref name="timeout"/>
    /// bounds the look (default <see cref="ConnectTimeout"/>); no answer within it is "not known", never "gone".</summary>
    public static async Task<bool> IsGoneAsync(UniqueAddress member, CancellationToken ct, TimeSpan? timeout = null)
    {
        if (member.Address.Host is not { Length: > 0 } host || member.Address.Port is not { } port) return false;
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bounded.CancelAfter(timeout ?? ConnectTimeout);
        try
        {
            await socket.ConnectAsync(host, port, bounded.Token);
            return false;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false; // no answer, or no route: not known either way
        }
    }
}
