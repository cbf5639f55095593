using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Configuration;

// Replication's data path: log batches through Akka.Remote (one actor system per node, as the control messages
// travel) against the dedicated TCP connection per peer that ActorCache's replicators open. Both ends in this
// process, over loopback: bulk throughput with a window of batches in flight, each acknowledged (what protocol
// C waits for), and the round trip of one 4 KiB write and its acknowledgement (a FLUSH at queue depth 1).
//
// dotnet run -c Release --project tests/ActorCache.TransportBench -- [ROUNDS] [BULK_MIB] [PINGS]
// (tests/bench/transport.sh runs it with the defaults: 3 rounds, 1024 MiB per bulk run, 5000 round trips.)

var rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 3;
var bulkBytes = (args.Length > 1 ? long.Parse(args[1], CultureInfo.InvariantCulture) : 1024) << 20;
var pings = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5000;
const int Window = 16;

Console.WriteLine("transport\tpayload\tMiB/s\tp50_us\tp99_us");
for (var round = 0; round < rounds; round++)
{
    foreach (var payload in new[] { 64 << 10, 1 << 20 })
    {
        using (var akka = await AkkaPair.StartAsync(payload))
        {
            var rate = await akka.BulkAsync(payload, bulkBytes, Window);
            var (p50, p99) = await akka.PingAsync(pings);
            Console.WriteLine($"akka.remote\t{payload >> 10}K\t{rate:F0}\t{p50:F0}\t{p99:F0}");
        }
        using (var tcp = await TcpPair.StartAsync())
        {
            var rate = await tcp.BulkAsync(payload, bulkBytes, Window);
            var (p50, p99) = await tcp.PingAsync(pings);
            Console.WriteLine($"tcp\t{payload >> 10}K\t{rate:F0}\t{p50:F0}\t{p99:F0}");
        }
    }
}

static class Latency
{
    public static (double P50, double P99) Quantiles(List<double> micros)
    {
        micros.Sort();
        return (micros[micros.Count / 2], micros[(int)(micros.Count * 0.99)]);
    }
}

/// <summary>Two actor systems with Akka.Remote over loopback; byte[] messages (Akka's byte-array serializer: no copy into JSON) acknowledged by a long.</summary>
sealed class AkkaPair : IDisposable
{
    private readonly ActorSystem _sender, _receiver;
    private readonly IActorRef _remoteSink;

    private AkkaPair(ActorSystem sender, ActorSystem receiver, IActorRef remoteSink) => (_sender, _receiver, _remoteSink) = (sender, receiver, remoteSink);

    public static async Task<AkkaPair> StartAsync(int payload)
    {
        // The default frame (128000 bytes) cannot carry a 1 MiB batch: raised as a deployment would have to.
        var frame = Math.Max(256 << 10, payload * 2);
        var config = ConfigurationFactory.ParseString($$"""
            akka.actor.provider = remote
            akka.loglevel = OFF
            akka.stdout-loglevel = OFF
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0, maximum-frame-size = {{frame}}b, send-buffer-size = {{frame * 4}}b, receive-buffer-size = {{frame * 4}}b }
            """);
        var receiver = ActorSystem.Create("receiver", config);
        var sender = ActorSystem.Create("sender", config);
        receiver.ActorOf(Props.Create(() => new Sink()), "sink");
        var address = ((ExtendedActorSystem)receiver).Provider.DefaultAddress;
        var sink = await sender.ActorSelection($"{address}/user/sink").ResolveOne(TimeSpan.FromSeconds(10));
        return new AkkaPair(sender, receiver, sink);
    }

    public async Task<double> BulkAsync(int payload, long total, int window)
    {
        var done = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously);
        _sender.ActorOf(Props.Create(() => new Source(_remoteSink, new byte[payload], total / payload, window, done)));
        var took = await done.Task;
        return total / (1 << 20) / took.TotalSeconds;
    }

    public async Task<(double, double)> PingAsync(int count)
    {
        var data = new byte[4096];
        var micros = new List<double>(count);
        for (var i = 0; i < count; i++)
        {
            var watch = Stopwatch.StartNew();
            await _remoteSink.Ask<long>(data, TimeSpan.FromSeconds(10));
            micros.Add(watch.Elapsed.TotalMicroseconds);
        }
        return Latency.Quantiles(micros);
    }

    public void Dispose()
    {
        _sender.Terminate().Wait();
        _receiver.Terminate().Wait();
    }

    private sealed class Sink : ReceiveActor
    {
        public Sink()
        {
            long received = 0;
            Receive<byte[]>(_ => Sender.Tell(++received));
        }
    }

    private sealed class Source : ReceiveActor
    {
        public Source(IActorRef sink, byte[] batch, long batches, int window, TaskCompletionSource<TimeSpan> done)
        {
            var watch = Stopwatch.StartNew();
            long sent = 0, acked = 0;
            for (; sent < Math.Min(window, batches); sent++) sink.Tell(batch);
            Receive<long>(_ =>
            {
                if (++acked == batches)
                {
                    done.SetResult(watch.Elapsed);
                    Context.Stop(Self);
                }
                else if (sent < batches)
                {
                    sent++;
                    sink.Tell(batch);
                }
            });
        }
    }
}

/// <summary>One TCP connection over loopback: frames of [length][payload], each acknowledged by 8 bytes, as the replicators' own connection.</summary>
sealed class TcpPair : IDisposable
{
    private readonly Socket _client, _server;

    private TcpPair(Socket client, Socket server) => (_client, _server) = (client, server);

    public static async Task<TcpPair> StartAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accepting = listener.AcceptAsync();
        await client.ConnectAsync(listener.LocalEndPoint!);
        var server = await accepting;
        server.NoDelay = true;
        return new TcpPair(client, server);
    }

    /// <summary>The receiving side: reads each frame whole and acknowledges it.</summary>
    private async Task ReceiveAsync(long frames, int maxPayload)
    {
        var header = new byte[4];
        var buffer = new byte[maxPayload];
        var ack = new byte[8];
        for (long i = 1; i <= frames; i++)
        {
            await ReadExactlyAsync(_server, header);
            await ReadExactlyAsync(_server, buffer.AsMemory(0, BitConverter.ToInt32(header)));
            BitConverter.TryWriteBytes(ack, i);
            await _server.SendAsync(ack);
        }
    }

    private static async Task ReadExactlyAsync(Socket socket, Memory<byte> into)
    {
        while (into.Length > 0)
        {
            var read = await socket.ReceiveAsync(into);
            if (read == 0) throw new IOException("closed");
            into = into[read..];
        }
    }

    private async Task SendFrameAsync(byte[] frame) => await _client.SendAsync(frame);

    private static byte[] Frame(int payload)
    {
        var frame = new byte[4 + payload];
        BitConverter.TryWriteBytes(frame, payload);
        return frame;
    }

    public async Task<double> BulkAsync(int payload, long total, int window)
    {
        var batches = total / payload;
        var frame = Frame(payload);
        var receiving = Task.Run(() => ReceiveAsync(batches, payload));
        var watch = Stopwatch.StartNew();
        var credits = new SemaphoreSlim(window, window);
        var acks = Task.Run(async () =>
        {
            var ack = new byte[8];
            for (long i = 0; i < batches; i++)
            {
                await ReadExactlyAsync(_client, ack);
                credits.Release();
            }
        });
        for (long i = 0; i < batches; i++)
        {
            await credits.WaitAsync();
            await SendFrameAsync(frame);
        }
        await acks;
        var took = watch.Elapsed;
        await receiving;
        return total / (1 << 20) / took.TotalSeconds;
    }

    public async Task<(double, double)> PingAsync(int count)
    {
        var frame = Frame(4096);
        var receiving = Task.Run(() => ReceiveAsync(count, 4096));
        var ack = new byte[8];
        var micros = new List<double>(count);
        for (var i = 0; i < count; i++)
        {
            var watch = Stopwatch.StartNew();
            await SendFrameAsync(frame);
            await ReadExactlyAsync(_client, ack);
            micros.Add(watch.Elapsed.TotalMicroseconds);
        }
        await receiving;
        return Latency.Quantiles(micros);
    }

    public void Dispose()
    {
        _client.Dispose();
        _server.Dispose();
    }
}
