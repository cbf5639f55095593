using System.Net;
using System.Net.Sockets;

namespace ActorCache.Nbd;

/// <summary>
/// Opens listening TCP and Unix sockets the way a server that must own its address wants them: bound
/// and listening at once, so a second process that asks for the same address is refused.
/// </summary>
public static class ListenSocket
{
    private const int SolSocket = 1, SoReuseAddr = 2; // Linux <asm-generic/socket.h>

    /// <summary>Binds and listens on <paramref name="endPoint"/>; the error names <paramref name="text"/> (the address as the user wrote it).</summary>
    public static Socket Open(EndPoint endPoint, string text, int backlog = 1024)
    {
        Socket socket;
        if (endPoint is UnixDomainSocketEndPoint)
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        else
        {
            socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            AllowRebindOverTimeWait(socket);
        }
        try
        {
            socket.Bind(endPoint);
            socket.Listen(backlog); // generous: a burst of reconnecting clients must not see EAGAIN
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new InvalidOperationException(DescribeBindFailure(text, e), e);
        }
    }

    /// <summary>
    /// Plain SO_REUSEADDR, so a restarted node binds while connections of its predecessor sit in
    /// TIME_WAIT (.NET's Bind sets it on Unix too; said here so nothing depends on that). Never .NET's
    /// <see cref="SocketOptionName.ReuseAddress"/>: on Linux that sets SO_REUSEPORT as well, which lets
    /// a second process bind the same port, and the kernel then splits new clients between the two
    /// (each client's writes land on whichever node it reached).
    /// </summary>
    private static void AllowRebindOverTimeWait(Socket socket)
    {
        if (!OperatingSystem.IsLinux()) return;
        socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
    }

    private static string DescribeBindFailure(string text, SocketException e) => e.SocketErrorCode switch
    {
        SocketError.AddressAlreadyInUse => $"cannot listen on {text}: address already in use (another node or program listens there)",
        SocketError.AddressNotAvailable => $"cannot listen on {text}: no interface of this machine has that address",
        SocketError.AccessDenied => $"cannot listen on {text}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
        _ => $"cannot listen on {text}: {e.Message}",
    };
}
