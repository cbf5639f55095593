using Akka.Configuration;
using Akka.Dispatch;

namespace ActorCache.Cache.Actors;

/// <summary>
/// Runs an idle actor's mailbox on the thread that sends to it; a busy actor's mailbox keeps running
/// where it is and takes the new message in turn. Extent actors use it so a write's index update is
/// made by the extent's own actor (one at a time, in mailbox order) without a thread switch and a
/// wake-up per write: the send returns with the update done unless another thread was already
/// running that extent. Handlers on this dispatcher must be short and must never block.
/// </summary>
public sealed class CallingThreadDispatcher(MessageDispatcherConfigurator configurator) : MessageDispatcher(configurator)
{
    protected override void ExecuteTask(IRunnable run) => run.Run();

    protected override void Shutdown()
    {
    }
}

/// <summary>HOCON hook for <see cref="CallingThreadDispatcher"/> (<c>type = "ActorCache.Cache.Actors.CallingThreadDispatcherConfigurator, ActorCache.Cache"</c>).</summary>
public sealed class CallingThreadDispatcherConfigurator : MessageDispatcherConfigurator
{
    private readonly CallingThreadDispatcher _dispatcher;

    public CallingThreadDispatcherConfigurator(Config config, IDispatcherPrerequisites prerequisites) : base(config, prerequisites) =>
        _dispatcher = new CallingThreadDispatcher(this);

    public override MessageDispatcher Dispatcher() => _dispatcher;
}
