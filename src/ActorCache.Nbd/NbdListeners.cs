using System.Net;
using System.Net.Sockets;

namespace ActorCache.Nbd;

/// <summary>
/// The front's listening sockets, bound and listening before the node creates anything, so an address
/// that is in use stops the start early; the server accepts on them once the volumes are online
/// (clients that connect meanwhile wait in the backlog). Closing removes the Unix socket files.
/// </summary>
public sealed class NbdListeners : IDisposable
{
    private readonly List<Socket> _sockets;

    private NbdListeners(List<Socket> sockets) => _sockets = sockets;

    internal IReadOnlyList<Socket> Sockets => _sockets;

    /// <summary>Binds every address or none: a failure closes what was bound and says which address failed.</summary>
    public static NbdListeners Bind(IReadOnlyList<NbdListenAddress> addresses)
    {
        var sockets = new List<Socket>();
        try
        {
            foreach (var address in addresses)
            {
                // A socket file left by an earlier run (killed) is removed; one a live process listens on is not: the path may lie
                // outside this node's data directory, and taking it over would send that node's clients to volumes of this one.
                if (address.EndPoint is UnixDomainSocketEndPoint unix && File.Exists(unix.ToString()))
                {
                    if (SomeoneListens(unix))
                        throw new InvalidOperationException($"cannot listen on {address.Text}: address already in use (another node or program listens there)");
                    File.Delete(unix.ToString());
                }
                sockets.Add(ListenSocket.Open(address.EndPoint, address.Text));
            }
        }
        catch
        {
            new NbdListeners(sockets).Dispose();
            throw;
        }
        return new NbdListeners(sockets);
    }

    /// <summary>Whether a process accepts connections on the Unix socket file (a stale file refuses them).</summary>
    private static bool SomeoneListens(UnixDomainSocketEndPoint endPoint)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(endPoint);
            return true;
        }
        catch (SocketException)
        {
            return false; // refused (nobody listens), or not a socket at all
        }
    }

    public void Dispose()
    {
        foreach (var socket in _sockets)
        {
            var unixPath = socket.LocalEndPoint is UnixDomainSocketEndPoint unix ? unix.ToString() : null;
            socket.Dispose();
            if (unixPath is not null) try { File.Delete(unixPath); } catch (IOException) { }
        }
        _sockets.Clear();
    }

    internal static string Describe(EndPoint? endPoint) => endPoint switch
    {
        UnixDomainSocketEndPoint unix => $"unix:{unix}",
        IPEndPoint ip => $"tcp://{ip}",
        _ => endPoint?.ToString() ?? "?",
    };
}
