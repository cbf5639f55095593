using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;

namespace ActorCache.Hosting.Logging;

/// <summary>
/// The node's console line: the simple single-line format (<c>12:27:15.710 info: Category[0] message</c>)
/// for every source, Akka included. An exception adds its type and message to the line, never its stack
/// trace: the trace goes to the debug log file (<see cref="DebugLogFile"/>), where it helps without
/// burying the console.
/// </summary>
public sealed class NodeConsoleFormatter() : ConsoleFormatter(Name)
{
    public new const string Name = "actorcache";

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var message = logEntry.Formatter(logEntry.State, logEntry.Exception);
        if (message.Length == 0 && logEntry.Exception is null) return;
        textWriter.Write(DateTime.Now.ToString("HH:mm:ss.fff "));
        textWriter.Write(ShortLevel(logEntry.LogLevel));
        textWriter.Write(": ");
        textWriter.Write(logEntry.Category);
        textWriter.Write('[');
        textWriter.Write(logEntry.EventId.Id);
        textWriter.Write("] ");
        textWriter.Write(OneLine(message));
        if (logEntry.Exception is { } e && !message.Contains(e.Message, StringComparison.Ordinal))
            textWriter.Write($" ({e.GetType().Name}: {OneLine(e.Message)})");
        textWriter.Write(Environment.NewLine);
    }

    public static string ShortLevel(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => "none",
    };

    private static string OneLine(string text) => text.Contains('\n') ? text.ReplaceLineEndings(" | ") : text;
}
