using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using ActorCache.Admin.Api;

namespace ActorCache.Admin;

/// <summary>
/// Long work admin requests start (a mode switch that drains a log; later snapshot clones), kept so
/// the command line can poll it (<c>GET /api/operations/ID</c>) and draw a progress bar. The work runs
/// on after the request that started it has gone; the newest finished ones are kept so a late poller
/// still learns how they ended.
/// </summary>
public sealed class AdminOperations
{
    private const int KeepFinished = 100;
    private readonly ConcurrentDictionary<string, AdminOperation> _operations = new(StringComparer.Ordinal);

    /// <summary>
    /// Starts <paramref name="work"/>, which reports its progress on the operation it is given, out of
    /// <paramref name="total"/> (0 when it cannot say how much there is).
    /// </summary>
    public AdminOperation Start(string kind, string target, string description, long total, Func<AdminOperation, Task> work)
    {
        var operation = new AdminOperation(Guid.NewGuid().ToString("N")[..16], kind, target, description, total, work);
        _operations[operation.Id] = operation;
        foreach (var old in _operations.Values.Where(o => o.FinishedAt is not null).OrderByDescending(o => o.FinishedAt).Skip(KeepFinished))
            _operations.TryRemove(old.Id, out _);
        return operation;
    }

    public AdminOperation? Find(string id) => _operations.GetValueOrDefault(id);

    public IReadOnlyList<AdminOperation> List() => [.. _operations.Values.OrderBy(o => o.StartedAt)];
}

/// <summary>One piece of long work: running, then done or failed; how far it is when it can say.</summary>
public sealed class AdminOperation
{
    private long _done, _total;
    private volatile Exception? _failure;
    private volatile StrongBox<DateTimeOffset>? _finishedAt; // a reference, so readers on other threads never see half a time

    internal AdminOperation(string id, string kind, string target, string description, long total, Func<AdminOperation, Task> work)
    {
        _total = total;
        Id = id;
        Kind = kind;
        Target = target;
        Description = description;
        Completion = RunAsync(work);
    }

    public string Id { get; }
    public string Kind { get; }
    public string Target { get; }
    public string Description { get; }
    public DateTimeOffset StartedAt { get; } = DateTimeOffset.UtcNow;
    public DateTimeOffset? FinishedAt => _finishedAt?.Value;

    /// <summary>Completes when the work has ended, well or not (<see cref="Failure"/>).</summary>
    public Task Completion { get; }

    /// <summary>What the work failed with, or null.</summary>
    public Exception? Failure => _failure;

    /// <summary><paramref name="done"/> of <paramref name="total"/> bytes (or whatever the kind counts).</summary>
    public void Report(long done, long total)
    {
        Volatile.Write(ref _total, total);
        Volatile.Write(ref _done, Math.Clamp(done, 0, total));
    }

    private async Task RunAsync(Func<AdminOperation, Task> work)
    {
        await Task.Yield(); // the request that starts it answers first
        try
        {
            await work(this);
        }
        catch (Exception e)
        {
            _failure = e;
        }
        finally
        {
            _finishedAt = new StrongBox<DateTimeOffset>(DateTimeOffset.UtcNow);
        }
    }

    public OperationInfo Info() => new()
    {
        Id = Id,
        Kind = Kind,
        Target = Target,
        Description = Description,
        State = FinishedAt is null ? "running" : _failure is null ? "done" : "failed",
        Done = Volatile.Read(ref _done),
        Total = Volatile.Read(ref _total),
        Error = _failure?.Message,
        StartedAt = StartedAt,
        FinishedAt = FinishedAt,
    };
}
