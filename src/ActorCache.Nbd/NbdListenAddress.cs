using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;

namespace ActorCache.Nbd;

/// <summary>Where the front listens: <c>tcp://HOST:PORT</c> or <c>unix:PATH</c>.</summary>
public sealed record NbdListenAddress(string Text, EndPoint EndPoint)
{
    public static bool TryParse(string text, out NbdListenAddress? address, out string error)
    {
        address = null;
        error = "";
        if (text.StartsWith("unix:", StringComparison.Ordinal))
        {
            var path = text["unix:".Length..];
            if (path.StartsWith("//", StringComparison.Ordinal)) path = path[2..];
            if (path.Length == 0) { error = $"'{text}' names no socket path; write unix:/path/to/nbd.sock"; return false; }
            address = new NbdListenAddress(text, new UnixDomainSocketEndPoint(Path.GetFullPath(path)));
            return true;
        }
        if (!text.StartsWith("tcp://", StringComparison.Ordinal))
        {
            error = $"'{text}' is not a listen address; write tcp://HOST:PORT or unix:PATH";
            return false;
        }
        var hostPort = text["tcp://".Length..].TrimEnd('/');
        var colon = hostPort.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(hostPort[(colon + 1)..], out var port) || port is < 0 or > 65535)
        {
            error = $"'{text}' needs a host and a port between 0 and 65535, e.g. tcp://127.0.0.1:10809";
            return false;
        }
        if (!TryResolveHost(hostPort[..colon].Trim('[', ']'), text, out var ip, out error)) return false;
        address = new NbdListenAddress(text, new IPEndPoint(ip, port));
        return true;
    }

    /// <summary>The address to bind for a listen host: <c>*</c> is every interface, an IP is itself, a name is resolved.</summary>
    public static bool TryResolveHost(string host, string text, [NotNullWhen(true)] out IPAddress? ip, out string error)
    {
        error = "";
        if (host is "*") ip = IPAddress.Any;
        else if (!IPAddress.TryParse(host, out ip))
        {
            try
            {
                ip = Dns.GetHostAddresses(host).FirstOrDefault();
            }
            catch (SocketException e)
            {
                error = $"cannot resolve host '{host}' in '{text}': {e.Message}";
                return false;
            }
            if (ip is null)
            {
                error = $"host '{host}' in '{text}' has no address";
                return false;
            }
        }
        return true;
    }
}

public sealed record NbdServerOptions
{
    public required IReadOnlyList<NbdListenAddress> Listen { get; init; }
    /// <summary>Requests one connection may have in flight before the server stops reading from it.</summary>
    public int MaxInFlightPerConnection { get; init; } = 64;
    /// <summary>
    /// Bytes of buffers borrowed for requests over 1 MiB that one connection may hold before the server stops reading
    /// from it (a request is always admitted when the connection holds none). Without it, 64 READs of 32 MiB (1.8 KB
    /// of headers, their replies never read) held 4 GiB: the pool rounds each to a 64 MiB array.
    /// </summary>
    public long MaxLargeBufferBytesPerConnection { get; init; } = 128L << 20;
    /// <summary>
    /// Bytes of those buffers all connections together may hold before the node stops reading large requests (a request is
    /// always admitted when none are held). The connection limit alone let 256 clients pin 32 GiB. A connection holds at
    /// most a quarter of it (and at most <see cref="MaxLargeBufferBytesPerConnection"/>).
    /// </summary>
    public long MaxLargeBufferBytes { get; init; } = AutoMaxLargeBufferBytes();

    /// <summary>
    /// The default node budget of large buffers: an eighth of the memory the GC may use (the machine's, or 75% of a
    /// container's limit where there is one), at least 128 MiB (two 32 MiB requests, which the pool lends as 64 MiB arrays).
    /// </summary>
    public static long AutoMaxLargeBufferBytes() => Math.Max(128L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 8);
    /// <summary>A client that has not finished option haggling by then is dropped.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>
    /// A client that takes none of a reply (sent 1 MiB at a time) for this long is dropped: its requests are not read meanwhile, but the
    /// buffers of those it sent hold memory and their share of <see cref="MaxLargeBufferBytes"/>, which four such clients
    /// would hold all of, and every other client's large requests would wait for good.
    /// </summary>
    public TimeSpan SendTimeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>
    /// Clients served at once, all exports together. Each may pin up to <see cref="MaxInFlightPerConnection"/> request
    /// buffers and <see cref="MaxLargeBufferBytesPerConnection"/>, so this bounds the memory clients can hold. A client
    /// past it is told why in the handshake (NBD_REP_ERR_POLICY) and goes.
    /// </summary>
    public int MaxConnections { get; init; } = 256;
}
