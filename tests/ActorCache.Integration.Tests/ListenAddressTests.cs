namespace ActorCache.Integration.Tests;

/// <summary>One TCP address, one node: a second node never shares a port (and the clients) with the first, yet a restart rebinds at once.</summary>
public sealed class ListenAddressTests : IDisposable
{
    private readonly string _first = NodeProcess.NewDataDir();
    private readonly string _second = NodeProcess.NewDataDir();

    public void Dispose()
    {
        Directory.Delete(_first, recursive: true);
        Directory.Delete(_second, recursive: true);
    }

    [Fact]
    public async Task A_second_node_on_the_same_tcp_port_exits_1_and_the_first_keeps_every_client()
    {
        var port = NodeProcess.FreePort();
        await using var first = NodeProcess.Launch(_first, ["--volume", "vol0:64M"], port: port);
        await first.WaitReadyAsync();

        var second = NodeProcess.Launch(_second, ["--volume", "vol0:64M"], port: port);
        Assert.Equal(1, await second.WaitExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains($"cannot listen on tcp://127.0.0.1:{port}: address already in use", second.Output);
        await second.DisposeAsync();

        // Every connection reaches the first node: what one copy writes, separate connections read back.
        var image = Path.Combine(_first, "in.img");
        await File.WriteAllBytesAsync(image, Tool.RandomBytes(8 << 20, 3));
        await Tool.CheckAsync("nbdcopy", "--flush", image, first.TcpUri("vol0"));
        var written = await File.ReadAllBytesAsync(image);
        for (var i = 0; i < 4; i++)
        {
            var back = Path.Combine(_first, $"out{i}.img");
            await Tool.CheckAsync("nbdcopy", first.TcpUri("vol0"), back);
            var read = await File.ReadAllBytesAsync(back);
            Assert.True(written.AsSpan().SequenceEqual(read.AsSpan(0, written.Length)), $"read {i} returned other data");
        }
    }

    [Fact]
    public async Task A_node_restarted_right_after_closing_client_connections_binds_its_port_again()
    {
        var port = NodeProcess.FreePort();
        var node = NodeProcess.Launch(_first, ["--volume", "vol0:64M"], port: port);
        await node.WaitReadyAsync();
        // A client still attached when the node stops: the node closes the connection first, and once
        // the client has closed its end too, the node's end sits in TIME_WAIT on the port for a minute.
        using (var client = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
            var buffer = new byte[256];
            Assert.True(await client.ReceiveAsync(buffer) > 0, "the node greets a new client");
            var stop = node.StopAsync();
            while (await client.ReceiveAsync(buffer) > 0) { }
            Assert.Equal(0, (await stop).ExitCode);
        }
        await node.DisposeAsync();
        var timeWait = await Tool.CheckAsync("ss", "-Htan", "state", "time-wait", $"( sport = :{port} )");
        Assert.False(string.IsNullOrWhiteSpace(timeWait), "the stop should have left a connection in TIME_WAIT on the port");

        await using var again = NodeProcess.Launch(_first, [], port: port);
        await again.WaitReadyAsync();
        await Tool.CheckAsync("nbdinfo", again.TcpUri("vol0"));
    }
}
