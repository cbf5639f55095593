using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace ActorCache.Hosting.Logging;

/// <summary>
/// DATA_DIR/actorcache-debug.log: every log line at Debug and above with full exception traces, for
/// the cases the console line does not explain (an unexpected failure at start above all). Lines are
/// queued and written by one background task, so no I/O thread waits for this file; when the queue is
/// full, lines are dropped. At 16 MiB the file is moved to actorcache-debug.log.1 and started afresh.
/// </summary>
public sealed class DebugLogFile : ILoggerProvider
{
    public const string FileName = "actorcache-debug.log";
    private const long RotateAt = 16L << 20;

    private readonly Channel<string> _lines = Channel.CreateBounded<string>(new BoundedChannelOptions(16384)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });
    private readonly Task _writer;

    public DebugLogFile(string dataDir)
    {
        Path = System.IO.Path.Combine(dataDir, FileName);
        _writer = Task.Run(WriteAsync);
    }

    public string Path { get; }

    public ILogger CreateLogger(string categoryName) => new FileLogger(this, categoryName);

    private void Enqueue(string line) => _lines.Writer.TryWrite(line);

    private async Task WriteAsync()
    {
        StreamWriter? file = null;
        try
        {
            await foreach (var line in _lines.Reader.ReadAllAsync())
            {
                try
                {
                    file ??= Open();
                    await file.WriteAsync(line);
                    if (_lines.Reader.Count == 0) await file.FlushAsync();
                    if (file.BaseStream.Length > RotateAt)
                    {
                        await file.DisposeAsync();
                        file = null;
                        File.Move(Path, Path + ".1", overwrite: true);
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // A debug log that cannot be written must not take the node down; the console still has every line.
                    if (file is not null) await file.DisposeAsync();
                    file = null;
                }
            }
        }
        finally
        {
            if (file is not null) await file.DisposeAsync();
        }
    }

    private StreamWriter Open() => new(new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite));

    /// <summary>Writes what is queued and closes the file.</summary>
    public void Dispose()
    {
        _lines.Writer.TryComplete();
        _writer.Wait(TimeSpan.FromSeconds(5));
    }

    private sealed class FileLogger(DebugLogFile file, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            var line = $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {NodeConsoleFormatter.ShortLevel(logLevel)}: {category}[{eventId.Id}] {formatter(state, exception)}\n";
            if (exception is not null) line += exception + "\n";
            file.Enqueue(line);
        }
    }
}
