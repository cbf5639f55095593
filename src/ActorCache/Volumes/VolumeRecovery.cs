using ActorCache.Blocks;

namespace ActorCache.Volumes;

/// <summary>
/// How far a volume that is opening has got with its log: written by the open (the replay's progress
/// reports), read by its actor's status, <c>/health</c> and NBD clients asking for it meanwhile.
/// </summary>
/// <param name="pause">A test aid (cache.recovery-delay): each progress report holds the replay this long.</param>
public sealed class VolumeRecovery(TimeSpan pause = default) : IProgress<(long Done, long Total)>
{
    private readonly DateTime _started = DateTime.UtcNow;
    private long _done, _total;
    private volatile bool _finished;

    public void Report((long Done, long Total) value)
    {
        Volatile.Write(ref _total, value.Total);
        Volatile.Write(ref _done, value.Done);
        if (pause > TimeSpan.Zero && value.Done < value.Total) Thread.Sleep(pause); // reports come from the replay's own thread
    }

    public void Finish() => _finished = true;

    public bool Finished => _finished;

    /// <summary>How far the open is now: bytes of log replayed of those to replay (0 of 0 before the replay has said anything).</summary>
    public RecoveryProgress Progress()
    {
        var total = Math.Max(0, Volatile.Read(ref _total));
        var done = Math.Min(Volatile.Read(ref _done), total);
        var elapsed = (DateTime.UtcNow - _started).TotalSeconds;
        long? left = total <= 0 || done <= 0 ? null : (long)Math.Ceiling(elapsed * (total - done) / done);
        return new RecoveryProgress(done, total, total <= 0 ? 0 : (int)(done * 100 / total), left);
    }

    /// <summary>"recovering the log: 45% (1.2G of 2.7G), about 12 s left", or "opening" before the replay has said anything.</summary>
    public string Describe() => Progress().Describe();
}

/// <summary>A volume's open at one moment: log bytes replayed of those to replay, the share done, and the seconds left (null until a rate is known).</summary>
public sealed record RecoveryProgress(long DoneBytes, long TotalBytes, int Percent, long? SecondsLeft)
{
    public string Describe()
    {
        if (TotalBytes <= 0) return "opening";
        var left = SecondsLeft is { } seconds ? $"about {seconds} s left" : "time left unknown yet";
        return $"recovering the log: {Percent}% ({ByteSize.Format(DoneBytes)} of {ByteSize.Format(TotalBytes)}), {left}";
    }
}
