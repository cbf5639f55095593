using System.Net;
using ActorCache.Blocks;
using ActorCache.Cache;
using ActorCache.Cache.Actors;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace ActorCache.Replication.Tests;

/// <summary>
/// A primary and a secondary write-back cache in temporary directories, a real receiver on loopback and a
/// link between them, plus a model of what every read of the primary must return.
/// </summary>
public sealed class ReplicaFixture : IAsyncDisposable
{
    public const long Size = 8 << 20;
    private static readonly RingBuffer Ring = new(128L << 20);
    private static readonly ActorSystem Actors = ActorSystem.Create("replication-tests", CacheDispatchers.Hocon);

    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("actorcache-replication-").FullName;
    public ILogger Logger { get; } = NullLogger.Instance;
    public WriteBackCache Primary { get; private set; }
    public WriteBackCache Secondary { get; private set; }
    public readonly byte[] Model = new byte[Size];
    public ReplicaReceiver? Receiver { get; private set; }
    public ReplicaLink? Link { get; private set; }

    /// <summary>False makes the link's endpoint resolver say the peer is unknown (down).</summary>
    public volatile bool PeerUp = true;

    /// <summary>Where the link connects instead of the receiver (a proxy), when set.</summary>
    public volatile IPEndPoint? Via;

    /// <summary>Wraps the secondary cache as the receiver's sink target (a delaying or recording target).</summary>
    public Func<IBlockTarget, IBlockTarget> WrapSink { get; set; } = target => target;
    private IBlockTarget? _sinkTarget;

    /// <summary>The secondary's sink while it follows the primary (the receiver takes connections only then).</summary>
    public ReplicaSink? Sink { get; private set; }

    public volatile bool Follows = true;

    /// <summary>The secondary stops following the primary (promoted, or another node named primary): its sink is revoked.</summary>
    public async Task StopFollowingAsync()
    {
        Follows = false;
        if (Sink is { } sink) await sink.RevokeAsync();
        Sink = null;
    }

    public ReplicaFixture()
    {
        Primary = OpenCache("primary");
        Secondary = OpenCache("secondary");
    }

    public string SecondaryState => Path.Combine(Directory, "secondary", "replica");
    public string LinkState => Path.Combine(Directory, "primary", "link-secondary");

    /// <summary>A write-back cache named <paramref name="name"/> in this fixture's directory, on the tests' shared ring unless given one of its own.</summary>
    public WriteBackCache OpenCache(string name, RingBuffer? ring = null)
    {
        var dir = Path.Combine(Directory, name);
        System.IO.Directory.CreateDirectory(dir);
        var backing = Path.Combine(dir, "backing.img");
        return WriteBackCache.Open(name, FileBacking.Open(backing, Size, create: !File.Exists(backing)), ring ?? Ring, OptionsFor(dir), CacheMode.WriteBack,
            NullLogger.Instance, Actors);
    }

    /// <summary>The cache options of every test cache here: small segments, quick destage, its log in <paramref name="dir"/>/log.</summary>
    public static CacheOptions OptionsFor(string dir) =>
        new()
        {
            LogDirectory = Path.Combine(dir, "log"),
            SegmentSize = 1 << 20,
            LogCapacity = 256L << 20,
            RetentionTime = TimeSpan.FromMinutes(5),
            MaxBatchBlocks = 64,
            DestageInterval = TimeSpan.FromMilliseconds(20),
            RingWaitTimeout = TimeSpan.FromSeconds(20),
        };

    public ReplicaReceiver StartReceiver()
    {
        _sinkTarget ??= WrapSink(Secondary);
        Receiver = ReplicaReceiver.Start(new IPEndPoint(IPAddress.Loopback, 0),
            name => name == "vol" && Follows ? Sink ??= new ReplicaSink(_sinkTarget, SecondaryState) : null, Logger);
        return Receiver;
    }

    public async Task StopReceiverAsync()
    {
        if (Receiver is not null) await Receiver.DisposeAsync();
        Receiver = null;
    }

    public ReplicaLink StartLink(ReplicationProtocol protocol = ReplicationProtocol.C, long rate = 0, TimeSpan? ackTimeout = null, long maxLag = 256L << 20,
        TimeSpan? catchUpGain = null, double catchUpRatio = ReplicaLinkOptions.DefaultCatchUpMaxLogRatio)
    {
        Link = new ReplicaLink(new ReplicaLinkOptions
        {
            Volume = "vol",
            PeerNode = "secondary",
            ResolvePeer = _ => ValueTask.FromResult<EndPoint?>(PeerUp ? Via ?? Receiver?.LocalEndpoint : null),
            Protocol = protocol,
            ResyncBytesPerSecond = rate,
            StateDirectory = LinkState,
            ReconnectInterval = TimeSpan.FromMilliseconds(100),
            // Long enough that a disk stalled for seconds by other work on the machine does not cut a session a test counts on.
            AckTimeout = ackTimeout ?? TimeSpan.FromSeconds(30),
            MaxLagBytes = maxLag,
            CatchUpGainPeriod = catchUpGain ?? TimeSpan.FromSeconds(10),
            CatchUpMaxLogRatio = catchUpRatio,
        }, Primary, Logger);
        Link.Start();
        return Link;
    }

    public async Task WaitInSyncAsync(TimeSpan? timeout = null)
    {
        await WaitUntilAsync(() => Link!.Status is { Connection: PeerConnection.Connected, Disk: PeerDisk.UpToDate, OutOfSyncBytes: 0 },
            timeout ?? TimeSpan.FromSeconds(30), () => $"the peer did not become UpToDate: {Link!.Status}");
    }

    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, Func<string> what)
    {
        var until = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > until) Assert.Fail(what());
            await Task.Delay(10);
        }
    }

    /// <summary>A 4 KiB-aligned write of self-checking blocks (see <see cref="SelfChecking"/>) to the primary and the model.</summary>
    public async Task WriteAsync(long block, int blocks, int seed, bool fua = false)
    {
        var data = SelfChecking(block, blocks, seed);
        lock (Model) data.CopyTo(Model, block * 4096);
        await Primary.WriteAsync(block * 4096, data, fua);
    }

    public async Task ZeroAsync(long block, int blocks, bool trim)
    {
        lock (Model) Array.Clear(Model, (int)(block * 4096), blocks * 4096);
        if (trim) await Primary.TrimAsync(block * 4096, blocks * 4096L, fua: false);
        else await Primary.WriteZeroesAsync(block * 4096, blocks * 4096L, mayDeallocate: false, fastOnly: false, fua: false);
    }

    /// <summary>Blocks whose last 4 bytes are the CRC32C of the rest: a block damaged in transit is recognisable wherever it lands.</summary>
    public static byte[] SelfChecking(long block, int blocks, int seed)
    {
        var data = new byte[blocks * 4096];
        var random = new Random(HashCode.Combine(block, seed));
        random.NextBytes(data);
        for (var b = 0; b < blocks; b++)
        {
            var span = data.AsSpan(b * 4096, 4096);
            BitConverter.TryWriteBytes(span[4092..], Crc32C.Compute(span[..4092]));
        }
        return data;
    }

    public static bool IsSelfChecking(ReadOnlySpan<byte> block) =>
        !block.ContainsAnyExcept((byte)0) ? true : BitConverter.ToUInt32(block[4092..]) == Crc32C.Compute(block[..4092]);

    /// <summary>A staged write's payload in one array (what a test target checks or records of a write received into ring slots).</summary>
    public static byte[] Gather(StagedWrite staged)
    {
        var data = new byte[staged.Length];
        staged.CopyTo(data);
        return data;
    }

    public static async Task<byte[]> ReadAllAsync(IBlockTarget target)
    {
        var content = new byte[Size];
        await target.ReadAsync(0, content);
        return content;
    }

    public byte[] ModelCopy()
    {
        lock (Model) return (byte[])Model.Clone();
    }

    public async Task AssertSecondaryEqualsAsync(byte[] expected, string when)
    {
        var actual = await ReadAllAsync(Secondary);
        if (expected.AsSpan().SequenceEqual(actual)) return;
        var first = 0;
        while (expected[first] == actual[first]) first++;
        Assert.Fail($"{when}: the secondary differs from the primary first at block {first / 4096} (byte {first})");
    }

    /// <summary>A clean restart of the primary: its link stops (saving its bitmap clean), its cache closes and opens again.</summary>
    public async Task ReopenPrimaryAsync()
    {
        if (Link is not null) await Link.DisposeAsync();
        Link = null;
        await Primary.DisposeAsync();
        Primary = OpenCache("primary");
    }

    /// <summary>Closes and reopens the secondary cache: what it acknowledged durable must still be there.</summary>
    public async Task ReopenSecondaryAsync()
    {
        await StopReceiverAsync();
        await Secondary.DisposeAsync();
        Secondary = OpenCache("secondary");
        _sinkTarget = null;
    }

    public async ValueTask DisposeAsync()
    {
        if (Link is not null) await Link.DisposeAsync();
        await StopReceiverAsync();
        await Primary.DisposeAsync();
        await Secondary.DisposeAsync();
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A sink target whose FLUSH can be held until the test lets it go.</summary>
public sealed class HeldFlushTarget(IBlockTarget below) : ForwardingTarget(below)
{
    private volatile TaskCompletionSource? _hold;
    private volatile TaskCompletionSource _flushReached = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Hold()
    {
        _flushReached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public void Release() => _hold?.TrySetResult();

    /// <summary>Completes when a FLUSH arrives while held.</summary>
    public Task FlushReached => _flushReached.Task;

    /// <summary>Completes when a held FLUSH is cancelled (its caller gave up on it) instead of released.</summary>
    public Task FlushCancelled => _flushCancelled.Task;

    private readonly TaskCompletionSource _flushCancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override async ValueTask FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_hold is { } hold && !hold.Task.IsCompleted)
        {
            _flushReached.TrySetResult();
            try
            {
                await hold.Task.WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                _flushCancelled.TrySetResult();
                throw;
            }
        }
        await base.FlushAsync(cancellationToken);
    }
}

/// <summary>A sink target whose writes wait while held (a frame being applied), telling when one arrives.</summary>
public sealed class HeldWriteTarget(IBlockTarget below) : ForwardingTarget(below)
{
    private volatile TaskCompletionSource? _hold;
    private volatile TaskCompletionSource _writeReached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _heldOffset = -1;

    /// <summary>Holds the next write, or with <paramref name="offset"/> the next write there.</summary>
    public void Hold(long offset = -1)
    {
        _writeReached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _heldOffset, offset);
        _hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public void Release() => _hold?.TrySetResult();

    public Task WriteReached => _writeReached.Task;

    public override async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken cancellationToken = default)
    {
        if (_hold is { } hold && !hold.Task.IsCompleted && Volatile.Read(ref _heldOffset) is var held && (held < 0 || held == offset))
        {
            _writeReached.TrySetResult();
            await hold.Task;
        }
        await base.WriteAsync(offset, source, fua, cancellationToken);
    }

    public override async ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        if (_hold is { } hold && !hold.Task.IsCompleted && Volatile.Read(ref _heldOffset) is var held && (held < 0 || held == staged.Offset))
        {
            _writeReached.TrySetResult();
            await hold.Task;
        }
        await base.CommitStagedWriteAsync(staged, fua, cancellationToken);
    }
}

/// <summary>A sink target that checks every block the receiver writes is one the primary wrote (self-checking or zero).</summary>
public sealed class CheckingTarget(IBlockTarget below) : ForwardingTarget(below)
{
    public int DamagedBlocksApplied;

    public override ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default)
    {
        for (var at = 0; at + 4096 <= data.Length; at += 4096)
            if (!ReplicaFixture.IsSelfChecking(data.Span.Slice(at, 4096))) Interlocked.Increment(ref DamagedBlocksApplied);
        return base.WriteAsync(offset, data, fua, cancellationToken);
    }

    public override ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default)
    {
        var data = ReplicaFixture.Gather(staged);
        for (var at = 0; at + 4096 <= data.Length; at += 4096)
            if (!ReplicaFixture.IsSelfChecking(data.AsSpan(at, 4096))) Interlocked.Increment(ref DamagedBlocksApplied);
        return base.CommitStagedWriteAsync(staged, fua, cancellationToken);
    }
}
