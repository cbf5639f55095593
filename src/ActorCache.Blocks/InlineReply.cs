namespace ActorCache.Blocks;

/// <summary>
/// Lets a front say "this call's completion only sends a reply" (the NBD front's FLUSH and FUA writes):
/// a target may then complete it on whatever thread finishes the work (the flusher right after its
/// fdatasync) instead of handing the continuation to the pool, which saves a thread wake-up per commit.
/// Any other call is completed through the pool, so no caller's code runs on a flusher's thread unasked.
/// While such a completion runs, <see cref="Running"/> is set: the front then sends a bounded amount
/// there and hands the rest to the pool, so the flusher is back to its log at once.
/// </summary>
public static class InlineReply
{
    [ThreadStatic] private static bool t_allowed, t_running;

    /// <summary>True inside <see cref="Allow"/>: the call being made may be completed inline.</summary>
    public static bool Allowed => t_allowed;

    /// <summary>True while a completion allowed inline runs on the thread that finished the work.</summary>
    public static bool Running => t_running;

    /// <summary>Marks the calls made until the scope is disposed (only their synchronous part: mark the call, then await outside).</summary>
    public static Scope Allow()
    {
        t_allowed = true;
        return new Scope(running: false);
    }

    /// <summary>For the target: marks the inline completion it runs now.</summary>
    public static Scope Run()
    {
        t_running = true;
        return new Scope(running: true);
    }

    public readonly struct Scope(bool running) : IDisposable
    {
        public void Dispose()
        {
            if (running) t_running = false;
            else t_allowed = false;
        }
    }
}
