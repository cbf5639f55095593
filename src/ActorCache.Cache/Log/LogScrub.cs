using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;

namespace ActorCache.Cache;

/// <summary>
/// Verifies, after an open through a persisted index, the log records that index covers: the open trusted
/// them without reading them. A background walk goes through them in log order (the <see cref="LogWalker"/>),
/// checking every header and data checksum as recovery does (<see cref="LogRecovery.DataOk"/>); until it has
/// passed a record, a read or destage of a block in it first moves the walk up to that record itself. A
/// record that fails is damage (<see cref="LogDamage.AddCorruptRecord"/>): its blocks fail with EIO and the
/// volume turns read-only, as a corrupt record found by a full replay makes it. Every record it covers was
/// durable when the index was saved, so a bad one is corruption, never a torn tail.
/// </summary>
/// <remarks>
/// Owns the walk and the verified watermark: everything below <see cref="VerifiedThrough"/> (and from
/// <see cref="To"/> on, replayed at open) is verified. The destager destages only verified records, so the
/// horizon never passes the watermark and no segment the walk needs is released under it.
/// </remarks>
internal sealed class LogScrub
{
    private const long StepBytes = 1L << 20; // verified under one hold of the lock before the walk lets readers in
    private const long PauseBytes = 64L << 20; // then a short pause, so a long scrub leaves the disk to foreground I/O
    private static readonly TimeSpan Pause = TimeSpan.FromMilliseconds(5);

    private readonly string _name;
    private readonly ILogMedium? _medium;
    private readonly LogWalker? _walker;
    private readonly LogDamage? _damage;
    private readonly ILogger? _logger;
    private readonly int _maxBatchBlocks;
    private readonly Lock _gate = new();
    private byte[]? _data;
    private long _verified, _corrupt;

    /// <summary>Nothing to verify: the open replayed (and verified) the whole log.</summary>
    public static LogScrub None { get; } = new();

    private LogScrub() => _name = "";

    /// <param name="from">The horizon at open (where the records the index covers start), with its batch <paramref name="sequence"/>.</param>
    /// <param name="to">The end of the last batch the index covers: the open replayed from there.</param>
    public LogScrub(string name, ILogMedium medium, Guid volumeId, long from, long sequence, long to, int maxBatchBlocks, LogDamage damage, ILogger logger)
    {
        _name = name;
        _medium = medium;
        _walker = new LogWalker(medium, volumeId);
        _walker.Seek(from, sequence);
        _damage = damage;
        _logger = logger;
        _maxBatchBlocks = maxBatchBlocks;
        From = from;
        To = to;
        _verified = from;
    }

    public long From { get; }
    public long To { get; }

    /// <summary>Byte address below which every covered record is verified.</summary>
    public long VerifiedThrough => Volatile.Read(ref _verified);

    public long TotalBytes => To - From;
    public long VerifiedBytes => Math.Min(VerifiedThrough, To) - From;
    public bool Done => VerifiedThrough >= To;

    /// <summary>Corrupt records the walk found.</summary>
    public long CorruptRecords => Interlocked.Read(ref _corrupt);

    /// <summary>True while log block <paramref name="logBlock"/> lies in a covered record not verified yet (two compares: on every log read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Pending(long logBlock)
    {
        var address = logBlock << LogFormat.BlockShift;
        return address < To && address >= Volatile.Read(ref _verified);
    }

    /// <summary>
    /// Moves the walk past the record holding log block <paramref name="logBlock"/> (a read or a destage of it
    /// waits for that); afterwards <see cref="LogDamage"/> says whether that record is corrupt.
    /// </summary>
    public void VerifyThrough(long logBlock)
    {
        if (!Pending(logBlock)) return;
        lock (_gate)
            while (Pending(logBlock) && Step()) { }
    }

    /// <summary>The background walk: sequential reads, a step at a time, pausing now and then; ends when all is verified or on <paramref name="cancellationToken"/>.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        if (Done) return;
        var started = DateTime.UtcNow;
        _logger?.LogInformation("volume {Name}: verifying the {Bytes} bytes of log the persisted index covers in the background (reads of them verify first)",
            _name, TotalBytes);
        long sincePause = 0;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                bool more;
                lock (_gate)
                {
                    var before = VerifiedThrough;
                    do more = Step();
                    while (more && VerifiedThrough - before < StepBytes);
                    sincePause += VerifiedThrough - before;
                }
                if (!more) break;
                if (sincePause >= PauseBytes)
                {
                    sincePause = 0;
                    await Task.Delay(Pause, cancellationToken).ConfigureAwait(false);
                }
                else await Task.Yield();
            }
        }
        catch (OperationCanceledException)
        {
            return; // the volume closes; the next open verifies again
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            _logger?.LogWarning("volume {Name}: the background verification of the log stopped: {Error}; reads of records it did not reach still verify them first",
                _name, e.Message);
            return;
        }
        if (Done)
            _logger?.LogInformation("volume {Name}: verified the {Bytes} bytes of log the persisted index covers in {Seconds:F2}s: {Result}", _name, TotalBytes,
                (DateTime.UtcNow - started).TotalSeconds, CorruptRecords == 0 ? "every record intact" : $"{CorruptRecords} corrupt record(s)");
        lock (_gate)
            if (Done) _data = null; // the batch buffer goes with the walk
    }

    /// <summary>Verifies the next record (under the lock); false once everything covered is verified.</summary>
    private bool Step()
    {
        var walker = _walker!;
        if (walker.Address >= To)
        {
            Volatile.Write(ref _verified, To);
            return false;
        }
        _data ??= GC.AllocateUninitializedArray<byte>(_maxBatchBlocks * LogFormat.BlockSize, pinned: true);
        var address = walker.Address;
        var sequence = walker.Sequence;
        var found = walker.TryRead();
        var intact = found && LogRecovery.DataOk(walker, _data, _maxBatchBlocks);
        // As at recovery: a write that failed part-way may have left a header where the batch was first meant to go.
        if (found && !intact && walker.TryReadAtNextSegment()) intact = LogRecovery.DataOk(walker, _data, _maxBatchBlocks);
        if (intact)
        {
            walker.Advance();
            Volatile.Write(ref _verified, Math.Min(walker.Address, To));
            return walker.Address < To;
        }

        // Corrupt: the record is damaged (the blocks the index has there fail with EIO). With its header intact it
        // says where it ends; without, everything up to the next record that reads back is taken as damaged.
        long end;
        if (found)
        {
            walker.Advance();
            end = Math.Min(walker.Address, To);
        }
        else
        {
            // Every record the scrub covers was durable: it continues at the first later one, whatever that says.
            LogRecovery.FindLater(walker.Reader, _medium!, address, sequence, out var next, out _);
            end = next.Found ? Math.Min(next.Address, To) : To;
            if (end < To) walker.Seek(next.Address, next.Header.Sequence);
        }
        var reason = $"log record {sequence} at address {address} (segment {address / _medium!.SegmentSize}) is corrupt; " +
                     "found verifying the records the persisted index covers";
        _damage!.AddCorruptRecord(reason, address, end);
        Interlocked.Increment(ref _corrupt);
        _logger?.LogError("volume {Name} is DEGRADED and read-only: {Reason}. Blocks whose newest version is in the damaged record fail with EIO; " +
                          "everything else reads normally. Copy the data off (nbdcopy) and restore the volume from a replica or snapshot", _name, reason);
        Volatile.Write(ref _verified, end);
        return end < To;
    }
}
