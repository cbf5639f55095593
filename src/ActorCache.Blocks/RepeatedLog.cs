using Microsoft.Extensions.Logging;

namespace ActorCache.Blocks;

/// <summary>
/// A warning that can repeat many times a second (every request of a client failing, a full log):
/// the first occurrence is logged at once, later ones within <c>window</c> are only counted, and the
/// next one after the window is logged with how many were held back, e.g.
/// <c>... (repeated 104 times in the last 10 s)</c>. <see cref="Flush"/> reports a count still held.
/// Thread-safe; costs a lock and a clock read per occurrence, so it belongs on failure paths only.
/// </summary>
public sealed class RepeatedLog(ILogger logger, LogLevel level, TimeSpan window, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Lock _lock = new();
    private long _windowStart = long.MinValue;
    private int _held;
    private string? _lastMessage;

    public RepeatedLog(ILogger logger, LogLevel level) : this(logger, level, TimeSpan.FromSeconds(10)) { }

    /// <summary>Logs <paramref name="message"/> (already formatted), or counts it when one was logged less than a window ago.</summary>
    public void Log(string message)
    {
        int held;
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            if (_windowStart != long.MinValue && _time.GetElapsedTime(_windowStart, now) < window)
            {
                _held++;
                _lastMessage = message;
                return;
            }
            held = _held;
            _held = 0;
            _lastMessage = null;
            _windowStart = now;
        }
        Write(message, held);
    }

    /// <summary>Logs the last held-back occurrence with its count, if any (e.g. when the condition ends or at close).</summary>
    public void Flush()
    {
        string? message;
        int held;
        lock (_lock)
        {
            (message, held) = (_lastMessage, _held);
            _held = 0;
            _lastMessage = null;
        }
        if (message is not null) Write(message, held - 1);
    }

    private void Write(string message, int held)
    {
        if (held <= 0) logger.Log(level, "{Message}", message);
        else logger.Log(level, "{Message} (repeated {Count} times in the last {Window} s)", message, held, (int)window.TotalSeconds);
    }
}
