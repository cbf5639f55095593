using ActorCache.Admin.Api;
using Akka.Actor;
using Akka.Actor.Internal;

namespace ActorCache.Admin;

/// <summary>
/// The node's actor hierarchy read from Akka's own cells, in the manner of Petabridge.Cmd's <c>actor hierarchy</c>:
/// each local actor's children (its cell's children container) and the messages queued in its mailbox (the cell's
/// <c>NumberOfMessages</c>). Nothing is sent to the actors, so a busy or blocked actor is shown as it is, queue and all.
/// </summary>
public sealed class ActorTree(ActorSystem system)
{
    /// <summary>
    /// <c>/user</c> (and <c>/system</c> when asked) with their descendants down to <paramref name="depth"/> levels below
    /// them (null: all of them).
    /// </summary>
    public IReadOnlyList<ActorInfo> Read(int? depth, bool includeSystem)
    {
        var extended = (ExtendedActorSystem)system;
        var roots = new List<ActorInfo> { Describe(extended.Guardian, depth) };
        if (includeSystem) roots.Add(Describe(extended.SystemGuardian, depth));
        return roots;
    }

    private static ActorInfo Describe(IActorRef actor, int? depth)
    {
        var cell = (actor as ActorRefWithCell)?.Underlying;
        var children = cell is null ? [] : cell.ChildrenContainer.Children.OrderBy(c => c.Path.Name, StringComparer.Ordinal).ToList();
        return new ActorInfo
        {
            Path = actor.Path.ToStringWithoutAddress(),
            Type = TypeOf(cell),
            Mailbox = QueuedMessages(cell),
            ChildCount = children.Count,
            Children = depth is <= 0 ? [] : children.Select(c => Describe(c, depth - 1)).ToList(),
        };
    }

    private static string? TypeOf(ICell? cell)
    {
        try
        {
            return cell?.Props?.Type?.FullName;
        }
        catch (Exception)
        {
            return null; // some props resolve their type lazily; not knowing it is no reason to fail the listing
        }
    }

    /// <summary>What the mailbox holds now; null where there is no mailbox to ask (an actor not yet started: its cell is a placeholder).</summary>
    private static int? QueuedMessages(ICell? cell)
    {
        if (cell is not ActorCell) return null;
        try
        {
            return cell.NumberOfMessages;
        }
        catch (Exception)
        {
            return null; // a mailbox type that cannot count (none in this node's configuration)
        }
    }
}
