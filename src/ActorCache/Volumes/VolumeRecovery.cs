using ActorCache.Blocks;

namespace ActorCache.Volumes;

/// <summary>
/// How far a volume that is opening has got with its log: written by the open (the replay's progress
/// reports), read by its actor's status, <c>/health</c> and NBD clients asking for it meanwhile.
/// </summary>
public sealed class VolumeRecovery : IProgress<(long Done, long Total)>
{
    private readonly DateTime _started = DateTime.UtcNow;
    private long _done, _total;
    private volatile bool _finished;

    public void Report((long Done, long Total) value)
    {
        Volatile.Write(ref _total, value.Total);
        Volatile.Write(ref _done, value.Done);
    }

    public void Finish() => _finished = true;

    public bool Finished => _finished;

    /// <summary>"recovering the log: 45% (1.2G of 2.7G), about 12 s left", or "opening" before the replay has said anything.</summary>
    public string Describe()
    {
        var total = Volatile.Read(ref _total);
        var done = Math.Min(Volatile.Read(ref _done), total);
        if (total <= 0) return "opening";
        var elapsed = (DateTime.UtcNow - _started).TotalSeconds;
        var left = done <= 0 ? "time left unknown yet" : $"about {Math.Ceiling(elapsed * (total - done) / done):0} s left";
        return $"recovering the log: {done * 100 / total}% ({ByteSize.Format(done)} of {ByteSize.Format(total)}), {left}";
    }
}
