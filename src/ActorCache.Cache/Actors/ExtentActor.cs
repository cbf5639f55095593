using System.Buffers;
using ActorCache.Blocks;
using Akka.Actor;

namespace ActorCache.Cache.Actors;

/// <summary>
/// Owns one 4 MiB extent of a volume while it has history to destage: writes the newest version of
/// its dirty blocks to the backing (block order, neighbours coalesced) and, once the destager has
/// made the backing durable, publishes their new location in its part of the index. Extents write
/// in parallel on the extent dispatcher. Messages carry block numbers and log addresses, never data.
/// </summary>
internal sealed class ExtentActor : ReceiveActor
{
    public sealed record WriteToBacking(List<DestageBlock> Blocks, DestageRound Round);

    public sealed record Publish(List<DestageBlock> Blocks, DestageRound Round);

    public ExtentActor(WriteBackCache cache)
    {
        ReceiveAsync<WriteToBacking>(async m =>
        {
            var buffer = ArrayPool<byte>.Shared.Rent(WriteBackCache.DestageBufferFor(m.Blocks));
            try
            {
                await cache.WriteToBackingAsync(m.Blocks, buffer);
                m.Round.Done(null);
            }
            catch (Exception e)
            {
                m.Round.Done(e as BlockTargetException ?? new BlockTargetException(BlockError.Io, e.Message));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        });
        Receive<Publish>(m =>
        {
            try
            {
                cache.PublishDestaged(m.Blocks);
                m.Round.Done(null);
            }
            catch (Exception e)
            {
                m.Round.Done(new BlockTargetException(BlockError.Io, e.Message));
            }
        });
    }

    public static Props Props(WriteBackCache cache) => Akka.Actor.Props.Create(() => new ExtentActor(cache)).WithDispatcher(CacheDispatchers.Extents);
}
