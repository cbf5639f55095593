namespace ActorCache.Blocks;

/// <summary>
/// Grows a live stack to <paramref name="NewSize"/> bytes (sent down with <see cref="IBlockTarget.TrySendAsync"/>):
/// each layer that keeps per-block state grows it and passes the message on; the backing makes room.
/// Only growing: a layer refuses a smaller size. Until the top layer announces the new size nobody
/// addresses the new blocks, so the layers may grow one after the other.
/// </summary>
public sealed record GrowTarget(long NewSize) : TargetMessage;
