using System.Net.Sockets;

namespace ActorCache.Nbd.Tests;

/// <summary>A Unix socket path is the node's only while nobody else listens there: a live listener is never taken over.</summary>
public sealed class ListenerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actorcache-listen-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_unix_socket_another_process_listens_on_is_refused_and_a_stale_one_is_replaced()
    {
        var path = Path.Combine(_dir, "nbd.sock");
        Assert.True(NbdListenAddress.TryParse($"unix:{path}", out var address, out _));
        using (var first = NbdListeners.Bind([address!]))
        {
            var refused = Assert.Throws<InvalidOperationException>(() => NbdListeners.Bind([address!]));
            Assert.Contains("already in use", refused.Message);
            using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            client.Connect(new UnixDomainSocketEndPoint(path)); // the first listener still has the path
        }

        // A file left by a process that was killed: nobody listens, so it is replaced.
        // (.NET removes the file of a socket it closes, so another process binds it and exits without a word.)
        using (var killed = System.Diagnostics.Process.Start("python3",
                   ["-c", $"import socket, os; s = socket.socket(socket.AF_UNIX); s.bind('{path}'); s.listen(); os._exit(0)"]))
            killed.WaitForExit();
        Assert.True(File.Exists(path));
        using var again = NbdListeners.Bind([address!]);
        using var reconnected = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        reconnected.Connect(new UnixDomainSocketEndPoint(path));
    }
}
