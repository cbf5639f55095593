using System.Net;
using ActorCache.Hosting;
using ActorCache.Nbd;

namespace ActorCache.Admin;

/// <summary>
/// The admin listener's socket, bound and listening before the node creates anything (so an address in
/// use stops the start early) and handed to Kestrel as a file descriptor when the web server starts.
/// Until then this object owns the descriptor; a start that fails before Kestrel took it closes it here.
/// </summary>
public sealed class AdminListener
{
    private int _fd;

    private AdminListener(int fd, IPEndPoint endPoint)
    {
        _fd = fd;
        EndPoint = endPoint;
    }

    /// <summary>Where it listens (the port the kernel picked when the setting says 0).</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>
    /// The URL tools use: http://HOST:PORT, an IPv6 host in brackets. A listener on every address (0.0.0.0, ::, as in a
    /// pod whose probes reach it on the pod's IP) is reached on loopback: the unspecified address is no destination.
    /// </summary>
    public string Url => EndPoint.Address.Equals(IPAddress.Any) ? $"http://{new IPEndPoint(IPAddress.Loopback, EndPoint.Port)}"
        : EndPoint.Address.Equals(IPAddress.IPv6Any) ? $"http://{new IPEndPoint(IPAddress.IPv6Loopback, EndPoint.Port)}"
        : $"http://{EndPoint}";

    /// <summary>The descriptor Kestrel takes over (ListenHandle); Kestrel closes it when it stops.</summary>
    public ulong Handle => (ulong)_fd;

    public static AdminListener Bind(AdminListenAddress address)
    {
        using var socket = ListenSocket.Open(address.EndPoint, $"admin address {address.Text}");
        var endPoint = (IPEndPoint)socket.LocalEndPoint!;
        // Kestrel wraps a raw descriptor in a socket of its own and closes it; the Socket here keeps
        // nothing, so it gets a duplicate and closes its own (the kernel socket stays, held by the copy).
        var fd = NodeLibC.Duplicate(socket.SafeHandle.DangerousGetHandle());
        if (fd < 0) throw new InvalidOperationException($"cannot keep the admin socket on {address.Text}: dup failed");
        return new AdminListener(fd, endPoint);
    }

    /// <summary>Closes the socket of a start that never reached the web server.</summary>
    public void CloseUnused()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) NodeLibC.Close(fd);
    }
}
