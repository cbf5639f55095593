namespace ActorCache.Cache;

/// <summary>
/// A background thread of its own that runs one job each time it is signalled (signals that arrive while
/// the job runs coalesce into one more run), started on the first signal and stopped when disposed. For
/// blocking work that must stay off the flusher's thread and must not hold a pool thread for milliseconds.
/// </summary>
internal sealed class SignalledWorker(string name, Action job) : IDisposable
{
    private readonly AutoResetEvent _signal = new(false);
    private readonly Lock _gate = new();
    private Thread? _thread;
    private volatile bool _stopping;

    public void Signal()
    {
        if (_stopping) return;
        if (_thread is null) Start();
        _signal.Set();
    }

    private void Start()
    {
        lock (_gate)
        {
            if (_thread is not null || _stopping) return;
            _thread = new Thread(Run) { IsBackground = true, Name = name };
            _thread.Start();
        }
    }

    private void Run()
    {
        while (true)
        {
            _signal.WaitOne();
            if (_stopping) return;
            try
            {
                job();
            }
            catch (Exception)
            {
                // A background job must never take the process down: its owner records what it needs to know.
            }
        }
    }

    public void Dispose()
    {
        Thread? thread;
        lock (_gate)
        {
            _stopping = true;
            thread = _thread;
        }
        _signal.Set();
        thread?.Join(TimeSpan.FromSeconds(10)); // the event is left to the GC: a late Signal must not find it disposed
    }
}
