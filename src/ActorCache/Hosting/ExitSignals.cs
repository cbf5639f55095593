using System.Runtime.InteropServices;

namespace ActorCache.Hosting;

/// <summary>
/// Keeps SIGTERM, SIGINT and SIGQUIT from killing a node whose stop has already run. The host's own handlers
/// (which turn the first signal into the graceful stop) go away when it is disposed; a signal after that would
/// take the runtime's default action and end the process with 143 in the middle of its last steps. That
/// happens in Kubernetes: the preStop hook's <c>cluster leave</c> stops the node, and the kubelet's SIGTERM
/// follows as soon as the hook returns. The stop is under way and will end with its own exit code, so these
/// signals are only noted.
/// </summary>
public static class ExitSignals
{
    // Kept for the life of the process: disposing them would bring the default action back.
    private static PosixSignalRegistration[]? _registrations;

    public static void IgnoreFromNowOn()
    {
        if (_registrations is not null) return;
        _registrations =
        [
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, Ignore),
            PosixSignalRegistration.Create(PosixSignal.SIGINT, Ignore),
            PosixSignalRegistration.Create(PosixSignal.SIGQUIT, Ignore),
        ];
    }

    private static void Ignore(PosixSignalContext context) => context.Cancel = true;
}
