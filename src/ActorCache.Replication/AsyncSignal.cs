using System.Threading.Tasks.Sources;

namespace ActorCache.Replication;

/// <summary>
/// An auto-reset signal one consumer awaits (the link's sender): <see cref="Set"/> from any thread, no
/// allocation per wait. A set before the wait makes the next wait complete at once.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource
{
    private readonly Lock _gate = new();
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private bool _set, _waiting;

    public void Set()
    {
        lock (_gate)
        {
            if (!_waiting)
            {
                _set = true;
                return;
            }
            _waiting = false;
        }
        _core.SetResult(true);
    }

    /// <summary>Completes when set (at once if set already); one waiter at a time.</summary>
    public ValueTask WaitAsync()
    {
        lock (_gate)
        {
            if (_set)
            {
                _set = false;
                return ValueTask.CompletedTask;
            }
            _core.Reset();
            _waiting = true;
            return new ValueTask(this, _core.Version);
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
