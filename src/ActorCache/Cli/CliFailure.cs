namespace ActorCache.Cli;

/// <summary>A command that was refused or failed: its message goes to stderr as one line, and the exit code is 1.</summary>
public sealed class CliFailure(string message) : Exception(message);
