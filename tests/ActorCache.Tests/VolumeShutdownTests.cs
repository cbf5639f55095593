using ActorCache.Volumes;
using Akka.Actor;

namespace ActorCache.Tests;

/// <summary>A node's stop closes its volumes all at once, except that a volume waits for the clones that read through to it.</summary>
public sealed class VolumeShutdownTests
{
    private static VolumeActorRef Volume(string name) => new(name, ActorRefs.Nobody, 0);

    [Fact]
    public async Task Volumes_close_together_and_an_origin_after_its_clones()
    {
        // Started in this order: a, then c (a clone of a snapshot of a), then b, then d (a clone of c's).
        var running = new[] { Volume("a"), Volume("c"), Volume("b"), Volume("d") };
        var clonesOf = new Dictionary<string, string[]> { ["a"] = ["c"], ["c"] = ["d"] };
        var started = new List<string>();
        var ends = running.ToDictionary(v => v.Name, _ => new TaskCompletionSource<VolumeClosed>(TaskCreationOptions.RunContinuationsAsynchronously));
        var all = VolumeShutdown.CloseAllAsync(running, name => clonesOf.GetValueOrDefault(name, []), v =>
        {
            lock (started) started.Add(v.Name);
            return ends[v.Name].Task;
        });

        // The volumes nothing reads through to close at once, together; the others wait.
        Assert.Equal(["d", "b"], Started());
        ends["d"].SetResult(new VolumeClosed("d", 0, null));
        await WaitForAsync(() => Started().Contains("c"));
        Assert.DoesNotContain("a", Started());
        ends["c"].SetResult(new VolumeClosed("c", VolumeClosed.UnknownBytes, "it did not finish flushing within 30 s"));
        await WaitForAsync(() => Started().Contains("a"));
        ends["a"].SetResult(new VolumeClosed("a", 0, null));
        Assert.False(all.IsCompleted, "b has not closed yet");
        ends["b"].SetResult(new VolumeClosed("b", 0, null));

        var closed = await all.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(["d", "b", "c", "a"], closed.Select(c => c.Name));
        Assert.False(Assert.Single(closed, c => c.Name == "c").IsDurable);
        return;

        List<string> Started()
        {
            lock (started) return [.. started];
        }
    }

    [Fact]
    public async Task A_close_that_fails_is_reported_as_a_possible_loss_and_the_others_still_close()
    {
        var running = new[] { Volume("a"), Volume("c"), Volume("b") };
        var closed = await VolumeShutdown.CloseAllAsync(running, name => name == "a" ? ["c"] : [], v =>
            v.Name == "c" ? Task.FromException<VolumeClosed>(new InvalidOperationException("broken")) : Task.FromResult(new VolumeClosed(v.Name, 0, null)));
        Assert.Equal(["b", "c", "a"], closed.Select(c => c.Name));
        var failed = Assert.Single(closed, c => !c.IsDurable);
        Assert.Equal("c", failed.Name);
        Assert.Equal(VolumeClosed.UnknownBytes, failed.NotDurableBytes);
        Assert.Contains("broken", failed.Reason);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        for (var waited = 0; !condition() && waited < 500; waited++) await Task.Delay(20);
        Assert.True(condition());
    }
}
