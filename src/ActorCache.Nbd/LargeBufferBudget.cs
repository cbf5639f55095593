namespace ActorCache.Nbd;

/// <summary>
/// A budget of large request buffers (requests over 1 MiB borrow theirs from the shared pool). Each connection has one, which
/// bounds what one client pins; the node has one for all connections together, so many clients sending 32 MiB requests cannot
/// take a node (a pod with a 1 GiB memory limit, say) out of memory. A request is always admitted when nothing is held, so
/// one larger than the budget still goes through on its own.
/// </summary>
internal sealed class LargeBufferBudget(long limit)
{
    private readonly Lock _gate = new();
    private long _held;                    // under _gate
    private TaskCompletionSource? _freed;  // under _gate: made only when a connection waits

    public long Limit => limit;

    /// <summary>Bytes held by every connection's requests now.</summary>
    public long Held
    {
        get
        {
            lock (_gate) return _held;
        }
    }

    /// <summary>Takes <paramref name="bytes"/>; when they do not fit, <paramref name="freed"/> completes at the next return.</summary>
    public bool TryTake(long bytes, out Task freed)
    {
        lock (_gate)
        {
            if (_held == 0 || _held + bytes <= limit)
            {
                _held += bytes;
                freed = Task.CompletedTask;
                return true;
            }
            _freed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            freed = _freed.Task;
            return false;
        }
    }

    /// <summary>Gives <paramref name="bytes"/> back (a negative count takes more: a buffer the pool lent larger than asked).</summary>
    public void Return(long bytes)
    {
        TaskCompletionSource? freed;
        lock (_gate)
        {
            _held -= bytes;
            freed = null;
            if (bytes > 0) (freed, _freed) = (_freed, null);
        }
        freed?.TrySetResult();
    }
}
