using System.Buffers;
using ActorCache.Blocks;
using Akka.Actor;

namespace ActorCache.Cache.Actors;

/// <summary>
/// Owns one 4 MiB extent of a volume while anything in it is cached (DESIGN §3): it is the only
/// writer of its part of the index and keeps its dirty count. Writers tell it where a write's blocks
/// went (ring slots, or a logged trim/zero), the flusher where they landed in the log (it then frees
/// the slots), the destager what to copy to the backing and when the backing has it. Readers read
/// the index without asking. Messages carry block numbers, slot numbers and log addresses, never data.
/// It runs on the <see cref="CallingThreadDispatcher"/>, so every handler is short and never blocks.
/// </summary>
internal sealed class ExtentActor : ReceiveActor
{
    /// <summary>The destager's step for this extent: write these blocks (newest versions, block order) to the backing.</summary>
    public sealed record WriteToBacking(ExtentHandle Extent, List<DestageBlock> Blocks, DestageRound Round);

    /// <summary>The backing holds these blocks durably now: point the index at it (unless a newer write came).</summary>
    public sealed record PublishDestaged(ExtentHandle Extent, List<DestageBlock> Blocks, DestageRound Round);

    public ExtentActor(WriteBackCache cache, ExtentHandle extent)
    {
        Receive<IndexWrite>(m =>
        {
            Exception? failure = null;
            try
            {
                cache.ApplyWrite(extent, m);
            }
            catch (Exception e)
            {
                failure = e;
            }
            finally
            {
                Interlocked.Decrement(ref extent.PendingWrites);
                extent.Handled();
                m.ExtentDone(failure);
            }
        });
        Receive<LoggedBlocks>(m =>
        {
            try
            {
                cache.ApplyLogged(m);
            }
            finally
            {
                cache.ReturnLogged(m);
                extent.Handled();
            }
        });
        Receive<WriteToBacking>(m =>
        {
            // On the thread pool: a slow backing must neither hold up this extent's writers nor the thread that sent this.
            _ = Task.Run(() => WriteToBackingAsync(cache, m));
            extent.Handled();
        });
        Receive<PublishDestaged>(m =>
        {
            try
            {
                cache.PublishDestaged(extent, m.Blocks);
                m.Round.Done(null);
            }
            catch (Exception e)
            {
                m.Round.Done(new BlockTargetException(BlockError.Io, e.Message));
            }
            finally
            {
                extent.Handled();
            }
        });
    }

    /// <summary>
    /// Through a producer rather than <c>Props.Create(() => new ...)</c>: that form compiles its argument
    /// expressions for every actor created, and extents are created all the time.
    /// </summary>
    public static Props Props(WriteBackCache cache, ExtentHandle extent) =>
        Akka.Actor.Props.CreateBy(new Producer(cache, extent)).WithDispatcher(CacheDispatchers.Extents);

    private sealed class Producer(WriteBackCache cache, ExtentHandle extent) : IIndirectActorProducer
    {
        public Type ActorType => typeof(ExtentActor);

        public ActorBase Produce() => new ExtentActor(cache, extent);

        public void Release(ActorBase actor)
        {
        }
    }

    private static async Task WriteToBackingAsync(WriteBackCache cache, WriteToBacking m)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(WriteBackCache.DestageBufferFor(m.Blocks));
        try
        {
            await cache.WriteToBackingAsync(m.Blocks, buffer).ConfigureAwait(false);
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
    }
}
