using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Dispatch;
using Akka.Event;
using Microsoft.Extensions.Logging;

namespace ActorCache.Hosting.Logging;

/// <summary>What the Akka log bridge needs from the host: the logger factory, and whether the node joins itself.</summary>
public sealed class AkkaLogBridgeSetup(ILoggerFactory loggers, bool joinsItself) : Setup
{
    public ILoggerFactory Loggers { get; } = loggers;
    public bool JoinsItself { get; } = joinsItself;
}

/// <summary>
/// Akka's logger: hands each Akka log event to Microsoft.Extensions.Logging once, as its plain message
/// under the logging class's name (<c>Akka.Cluster.Cluster</c>, <c>ActorCache.Volumes.VolumeActor</c>),
/// so Akka lines look like every other line instead of carrying Akka's own
/// <c>[INFO][date][Thread]</c> prefix inside ours.
/// </summary>
public sealed class AkkaLogBridge : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    public AkkaLogBridge()
    {
        var setup = Context.System.Settings.Setup.Get<AkkaLogBridgeSetup>();
        var loggers = setup.HasValue ? setup.Value.Loggers : Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
        var joinsItself = setup.HasValue && setup.Value.JoinsItself;
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(e => AkkaLogLine.Write(loggers, e, joinsItself));
    }
}

/// <summary>
/// Akka's "minimal" logger, which Akka uses while its loggers start and after they stop (the last lines
/// of a shutdown). Akka's own prints them to stdout in its format; this one sends them the same way as
/// <see cref="AkkaLogBridge"/>. Akka creates it by class name, so the host hands it the loggers statically.
/// </summary>
public sealed class AkkaStartStopLogger : MinimalLogger
{
    /// <summary>Set by the host before the actor system starts; lines before that are dropped.</summary>
    public static volatile ILoggerFactory? Loggers;

    protected override void Log(object message)
    {
        if (message is LogEvent e && Loggers is { } loggers) AkkaLogLine.Write(loggers, e, joinsItself: false);
    }
}

/// <summary>One Akka log event as one Microsoft.Extensions.Logging line.</summary>
internal static class AkkaLogLine
{
    // A node without seed nodes joins itself right after start; Akka's hint to join by hand is wrong there.
    private const string ManualJoinHint = "No seed-nodes configured, manual cluster join required";

    public static void Write(ILoggerFactory loggers, LogEvent e, bool joinsItself)
    {
        var message = e.Message?.ToString() ?? "";
        if (joinsItself && message.Contains(ManualJoinHint, StringComparison.Ordinal)) return;
        loggers.CreateLogger(CategoryOf(e)).Log(LevelOf(e.LogLevel()), 0, message, e.Cause, static (text, _) => text);
    }

    /// <summary>The logging class; for Akka's string sources ("Cluster (akka://actorcache)") Akka.Cluster and the like.</summary>
    private static string CategoryOf(LogEvent e)
    {
        if (e.LogClass is { } type && type != typeof(DummyClassForStringSources)) return type.FullName ?? type.Name;
        var source = e.LogSource ?? "";
        var end = source.IndexOfAny([' ', '(']);
        return "Akka." + (end > 0 ? source[..end] : source.Length > 0 && !source.Contains("://", StringComparison.Ordinal) ? source : "Actor");
    }

    private static Microsoft.Extensions.Logging.LogLevel LevelOf(Akka.Event.LogLevel level) => level switch
    {
        Akka.Event.LogLevel.DebugLevel => Microsoft.Extensions.Logging.LogLevel.Debug,
        Akka.Event.LogLevel.InfoLevel => Microsoft.Extensions.Logging.LogLevel.Information,
        Akka.Event.LogLevel.WarningLevel => Microsoft.Extensions.Logging.LogLevel.Warning,
        _ => Microsoft.Extensions.Logging.LogLevel.Error,
    };
}
