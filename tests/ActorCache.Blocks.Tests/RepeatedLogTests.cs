using ActorCache.Blocks;
using Microsoft.Extensions.Logging;

namespace ActorCache.Blocks.Tests;

public sealed class RepeatedLogTests
{
    private sealed class ManualClock : TimeProvider
    {
        public long Ticks;
        public override long GetTimestamp() => Ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public void Advance(TimeSpan by) => Ticks += by.Ticks;
    }

    private sealed class Lines : ILogger
    {
        public readonly List<(LogLevel Level, string Text)> Written = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Written.Add((logLevel, formatter(state, exception)));
    }

    [Fact]
    public void A_burst_is_logged_once_and_the_next_line_after_the_window_carries_the_count()
    {
        var clock = new ManualClock();
        var lines = new Lines();
        var log = new RepeatedLog(lines, LogLevel.Warning, TimeSpan.FromSeconds(10), clock);
        for (var i = 0; i < 105; i++)
        {
            log.Log($"log is full ({i})");
            clock.Advance(TimeSpan.FromMilliseconds(50)); // 105 in 5.25 s
        }
        Assert.Equal([(LogLevel.Warning, "log is full (0)")], lines.Written);

        clock.Advance(TimeSpan.FromSeconds(10));
        log.Log("log is full (105)");
        Assert.Equal((LogLevel.Warning, "log is full (105) (repeated 104 times in the last 10 s)"), lines.Written[1]);

        clock.Advance(TimeSpan.FromSeconds(11));
        log.Log("log is full again");
        Assert.Equal("log is full again", lines.Written[2].Text); // nothing held back: no count
    }

    [Fact]
    public void Flush_reports_what_is_still_held_back()
    {
        var clock = new ManualClock();
        var lines = new Lines();
        var log = new RepeatedLog(lines, LogLevel.Error, TimeSpan.FromSeconds(10), clock);
        log.Flush();
        Assert.Empty(lines.Written);
        log.Log("a");
        log.Log("b");
        log.Log("c");
        log.Flush();
        Assert.Equal(["a", "c (repeated 1 times in the last 10 s)"], lines.Written.Select(l => l.Text));
        log.Flush();
        Assert.Equal(2, lines.Written.Count);
    }
}
