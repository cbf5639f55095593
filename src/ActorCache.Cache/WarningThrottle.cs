namespace ActorCache.Cache;

/// <summary>
/// Keeps a warning that repeats (a full log, a failing disk retried every few milliseconds) to one line
/// per interval, with how many were left out: "... (and 104 more times in the last 10 s)".
/// </summary>
internal sealed class WarningThrottle(TimeSpan interval)
{
    private readonly Lock _gate = new();
    private DateTime _last = DateTime.MinValue;
    private int _suppressed;

    /// <summary>True when this occurrence should be logged; <paramref name="suffix"/> then says how many were left out since the last one.</summary>
    public bool ShouldLog(out string suffix)
    {
        lock (_gate)
        {
            var now = DateTime.UtcNow;
            if (now - _last < interval)
            {
                _suppressed++;
                suffix = "";
                return false;
            }
            suffix = _suppressed == 0 ? "" : $" (and {_suppressed} more times in the last {(now - _last).TotalSeconds:F0} s)";
            _last = now;
            _suppressed = 0;
            return true;
        }
    }
}
