using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace ActorCache.Nbd;

/// <summary>
/// Accepts NBD clients on every configured address and runs one <see cref="NbdConnection"/> each.
/// Stopping refuses new clients, lets in-flight requests finish and answers them, then closes.
/// </summary>
public sealed class NbdServer(INbdExportCatalog catalog, NbdServerOptions options, ILogger<NbdServer> logger) : IAsyncDisposable
{
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<NbdConnection, Task> _connections = new();
    private readonly CancellationTokenSource _stopping = new();

    /// <summary>Binds every address or none: a failure closes what was bound and says which address failed.</summary>
    public void Start()
    {
        try
        {
            foreach (var address in options.Listen) _listeners.Add(Bind(address));
        }
        catch
        {
            foreach (var listener in _listeners) listener.Dispose();
            _listeners.Clear();
            throw;
        }
        foreach (var listener in _listeners)
        {
            logger.LogInformation("NBD listening on {Address}", Describe(listener.LocalEndPoint));
            _acceptLoops.Add(AcceptLoopAsync(listener));
        }
    }

    private static Socket Bind(NbdListenAddress address)
    {
        Socket socket;
        if (address.EndPoint is UnixDomainSocketEndPoint unix)
        {
            var path = unix.ToString();
            // A stale socket file from an earlier run: the data directory lock says no one else owns it.
            if (File.Exists(path)) File.Delete(path);
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        }
        else
        {
            socket = new Socket(address.EndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        }
        try
        {
            socket.Bind(address.EndPoint);
            socket.Listen(1024); // generous: a burst of reconnecting clients must not see EAGAIN
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new InvalidOperationException($"cannot listen on {address.Text}: {e.Message}", e);
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stopping.Token);
            }
            catch (OperationCanceledException) { return; }
            catch (ObjectDisposedException) { return; }
            catch (SocketException e)
            {
                logger.LogWarning("accept on {Address} failed: {Message}", Describe(listener.LocalEndPoint), e.Message);
                continue;
            }
            if (client.AddressFamily != AddressFamily.Unix) client.NoDelay = true;
            var connection = new NbdConnection(client, catalog, options, logger)
            {
                Peer = client.AddressFamily == AddressFamily.Unix ? "unix" : client.RemoteEndPoint?.ToString() ?? "?",
            };
            _connections[connection] = RunConnectionAsync(connection);
        }
    }

    private async Task RunConnectionAsync(NbdConnection connection)
    {
        await Task.Yield();
        try
        {
            await connection.RunAsync();
        }
        catch (Exception e)
        {
            logger.LogError(e, "NBD connection {Peer} failed", connection.Peer);
        }
        finally
        {
            await connection.DisposeAsync();
            _connections.TryRemove(connection, out _);
        }
    }

    /// <summary>Graceful stop: no new clients, answer what is in flight, then close (forcibly after <paramref name="grace"/>).</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (_stopping.IsCancellationRequested) return;
        _stopping.Cancel();
        foreach (var listener in _listeners)
        {
            var unixPath = listener.LocalEndPoint is UnixDomainSocketEndPoint unix ? unix.ToString() : null;
            listener.Dispose();
            if (unixPath is not null) try { File.Delete(unixPath); } catch (IOException) { }
        }
        await Task.WhenAll(_acceptLoops);
        foreach (var connection in _connections.Keys) connection.StopReading();
        var all = Task.WhenAll(_connections.Values);
        if (await Task.WhenAny(all, Task.Delay(grace)) != all)
        {
            logger.LogWarning("{Count} NBD connections did not finish within {Grace}; closing them", _connections.Count, grace);
            foreach (var connection in _connections.Keys) await connection.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(5));
        _stopping.Dispose();
    }

    private static string Describe(EndPoint? endPoint) => endPoint switch
    {
        UnixDomainSocketEndPoint unix => $"unix:{unix}",
        IPEndPoint ip => $"tcp://{ip}",
        _ => endPoint?.ToString() ?? "?",
    };
}
