using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Nbd.Tests;

internal static class TestServer
{
    /// <summary>A server started on the Unix socket <paramref name="socket"/>, dropping clients that take over 5 s to negotiate.</summary>
    public static NbdServer Start(INbdExportCatalog catalog, string socket, long? maxLargeBufferBytes = null, TimeSpan? sendTimeout = null)
    {
        NbdListenAddress.TryParse($"unix:{socket}", out var address, out _);
        var options = new NbdServerOptions { Listen = [address!], HandshakeTimeout = TimeSpan.FromSeconds(5) };
        if (maxLargeBufferBytes is { } budget) options = options with { MaxLargeBufferBytes = budget };
        if (sendTimeout is { } timeout) options = options with { SendTimeout = timeout };
        var server = new NbdServer(catalog, options, NullLogger<NbdServer>.Instance);
        server.Start();
        return server;
    }
}
