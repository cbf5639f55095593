using System.Collections.Concurrent;
using System.Net.Sockets;
using ActorCache.Blocks;
using Microsoft.Extensions.Logging;

namespace ActorCache.Nbd;

/// <summary>
/// Accepts NBD clients on every configured address and runs one <see cref="NbdConnection"/> each.
/// Stopping refuses new clients, lets in-flight requests finish and answers them, then closes.
/// </summary>
public sealed class NbdServer(INbdExportCatalog catalog, NbdServerOptions options, ILogger<NbdServer> logger) : IAsyncDisposable
{
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<NbdConnection, Task> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private NbdListeners? _listeners;
    private readonly RepeatedLog _refusals = new(logger, LogLevel.Warning);
    private readonly LargeBufferBudget _largeBuffers = new(options.MaxLargeBufferBytes);

    /// <summary>Bytes of large request buffers every connection's requests hold now (at most <see cref="NbdServerOptions.MaxLargeBufferBytes"/>).</summary>
    public long LargeBuffersHeld => _largeBuffers.Held;

    /// <summary>Clients past the limit told why at once (each until its handshake ends); more are dropped unanswered.</summary>
    private const int RefusedAtOnce = 16;
    private int _served; // connections served (or being served), against the limit
    private int _refusing; // connections being told they are past it

    /// <summary>Binds every configured address (all or none) and starts accepting.</summary>
    public void Start() => Start(NbdListeners.Bind(options.Listen));

    /// <summary>Starts accepting on listeners bound earlier; the server owns them from here on.</summary>
    public void Start(NbdListeners listeners)
    {
        _listeners = listeners;
        foreach (var listener in listeners.Sockets)
        {
            logger.LogInformation("NBD listening on {Address}", NbdListeners.Describe(listener.LocalEndPoint));
            _acceptLoops.Add(AcceptLoopAsync(listener));
        }
        _acceptLoops.Add(DropStalledClientsAsync());
    }

    /// <summary>
    /// Drops a client whose socket has taken none of a reply for <see cref="NbdServerOptions.SendTimeout"/>: the requests
    /// it sent before it stopped reading hold their buffers (and their share of the node's large-buffer budget) until their
    /// replies go out, which would be never. Its connection ends as if it had gone away.
    /// </summary>
    private async Task DropStalledClientsAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(Math.Clamp(options.SendTimeout.TotalMilliseconds / 4, 10, 1000)));
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                var now = Environment.TickCount64;
                foreach (var connection in _connections.Keys)
                {
                    if (connection.SendStalledFor(now) < options.SendTimeout || connection.Dropped) continue;
                    connection.Dropped = true;
                    logger.LogWarning("NBD client {Peer} has taken none of its replies for {Timeout} s (actorcache.nbd.send-timeout); dropping it",
                        connection.Peer, options.SendTimeout.TotalSeconds);
                    connection.Drop("it took none of its replies for the send timeout");
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        var backoff = 0;
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
                // Out of file descriptors (EMFILE, ENFILE) the client stays in the backlog and every accept fails at once: retried
                // after a pause that doubles up to a second (logged then), not in a loop that spins a core and floods the log.
                backoff = Math.Clamp(backoff * 2, 10, 1000);
                if (backoff is 10 or 1000)
                    logger.LogWarning("accept on {Address} failed: {Message}; retrying in {Backoff} ms", NbdListeners.Describe(listener.LocalEndPoint), e.Message,
                        backoff);
                try
                {
                    await Task.Delay(backoff, _stopping.Token);
                }
                catch (OperationCanceledException) { return; }
                continue;
            }
            backoff = 0;
            if (client.AddressFamily != AddressFamily.Unix) client.NoDelay = true;
            var peer = client.AddressFamily == AddressFamily.Unix ? "unix" : client.RemoteEndPoint?.ToString() ?? "?";
            string? refusal = null;
            // Counted apart: a client being refused must not take the place of one served (one that leaves and comes back).
            if (Volatile.Read(ref _served) >= options.MaxConnections)
            {
                refusal = $"the node serves its limit of {options.MaxConnections} NBD connections (actorcache.nbd.max-connections); try again later";
                _refusals.Log($"refusing NBD client {peer}: {refusal}");
                if (Volatile.Read(ref _refusing) >= RefusedAtOnce)
                {
                    // Beyond the few being told why, a flood is dropped without a word: each told one lives until its handshake ends.
                    client.Dispose();
                    continue;
                }
                Interlocked.Increment(ref _refusing);
            }
            else Interlocked.Increment(ref _served);
            var connection = new NbdConnection(client, catalog, options, _largeBuffers, logger) { Peer = peer, Refusal = refusal };
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
            Interlocked.Decrement(ref connection.Refusal is null ? ref _served : ref _refusing);
        }
    }

    /// <summary>Connections counted against the limit right now (served, or in their handshake to be served).</summary>
    internal int Served => Volatile.Read(ref _served);

    /// <summary>Clients attached to the export <paramref name="name"/> right now (past the handshake).</summary>
    public int ConnectionsTo(string name) => _connections.Keys.Count(c => IsOf(c.Export, name));

    /// <summary>A client of the volume itself or of its past (<c>NAME@POINT</c>): both read the volume.</summary>
    private static bool IsOf(string? export, string name) =>
        export is not null && export.StartsWith(name, StringComparison.Ordinal) && (export.Length == name.Length || export[name.Length] == '@');

    /// <summary>
    /// Ends every client attached to <paramref name="name"/> (or to its past, <c>NAME@POINT</c>) the way a stop does: requests already
    /// received are answered, then the connection closes (forcibly after <paramref name="grace"/>).
    /// The caller withdraws the export first, or the clients could come straight back. Returns how many there were.
    /// </summary>
    public async Task<int> DisconnectAsync(string name, string reason, TimeSpan grace)
    {
        // Also those still in the handshake that asked for it: one may have opened the export before its withdrawal.
        // The fence pairs with the one a handshake makes between naming the export and opening it (NbdConnection.OnAttaching).
        Interlocked.MemoryBarrier();
        var attached = _connections.Where(c => IsOf(c.Key.Export ?? c.Key.Attaching, name)).ToList();
        foreach (var (connection, _) in attached) connection.StopReading(reason);
        var all = Task.WhenAll(attached.Select(c => c.Value));
        if (await Task.WhenAny(all, Task.Delay(grace)) != all)
            foreach (var (connection, _) in attached) await connection.DisposeAsync();
        return attached.Count;
    }

    /// <summary>Graceful stop: no new clients, answer what is in flight, then close (forcibly after <paramref name="grace"/>).</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (_stopping.IsCancellationRequested) return;
        _stopping.Cancel();
        _listeners?.Dispose();
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
}
