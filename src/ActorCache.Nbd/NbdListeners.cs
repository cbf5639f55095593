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
                // A stale socket file from an earlier run: the data directory lock says no one else owns it.
                if (address.EndPoint is UnixDomainSocketEndPoint unix && File.Exists(unix.ToString())) File.Delete(unix.ToString());
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
