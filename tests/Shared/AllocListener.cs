using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
namespace ActorCache.Testing;
/// <summary>Samples the runtime's allocation events so a failing allocation test names the types it allocated.</summary>
internal sealed class AllocListener : EventListener
{
    public readonly ConcurrentDictionary<string, int> Types = new();

    /// <summary>
    /// The <paramref name="count"/> most sampled types, "type=samples". Taken from a snapshot: the
    /// runtime keeps adding samples on its own thread while a test reads them (enumerating the live
    /// dictionary through LINQ could throw).
    /// </summary>
    public string Top(int count) => string.Join(", ", Types.ToArray().OrderByDescending(t => t.Value).Take(count).Select(t => $"{t.Key}={t.Value}"));
    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime") EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1);
    }
    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.EventName != "GCAllocationTick_V4" && e.EventName != "GCAllocationTick_V3") return;
        var i = e.PayloadNames!.IndexOf("TypeName");
        Types.AddOrUpdate(e.Payload![i]?.ToString() ?? "?", 1, (_, n) => n + 1);
    }
}
