using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace ActorCache.Nbd;

/// <summary>
/// Buffered receive side of a connection: small frames (request headers, options) come out of one
/// pinned buffer so a burst of pipelined requests costs one recv; large payloads bypass the buffer
/// and land straight in their destination. <paramref name="beforeWaiting"/> runs whenever a recv
/// has to wait for the peer (the connection sends the replies it held back then).
/// </summary>
internal sealed class SocketReader(Socket socket, int bufferSize = 64 << 10, Action? beforeWaiting = null)
{
    private readonly byte[] _buffer = GC.AllocateArray<byte>(bufferSize, pinned: true);
    private int _start;
    private int _end;

    /// <summary>Bytes already received and not yet consumed: what can be parsed without another recv.</summary>
    public int Buffered => _end - _start;

    /// <summary>Fills <paramref name="destination"/> completely; throws <see cref="EndOfStreamException"/> if the peer closes first.</summary>
    public ValueTask ReadExactAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var buffered = _end - _start;
        if (buffered >= destination.Length)
        {
            _buffer.AsSpan(_start, destination.Length).CopyTo(destination.Span);
            _start += destination.Length;
            return ValueTask.CompletedTask;
        }
        return ReadSlowAsync(destination, cancellationToken);
    }

    /// <summary>Reads and throws away <paramref name="count"/> bytes (the payload of a refused write).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))] // suspends on every recv that waits: no box per call
    public async ValueTask SkipAsync(long count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            if (_start == _end) await FillAsync(cancellationToken).ConfigureAwait(false);
            var n = (int)Math.Min(count, _end - _start);
            _start += n;
            count -= n;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))] // suspends on every recv that waits: no box per call
    private async ValueTask ReadSlowAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var buffered = _end - _start;
        _buffer.AsMemory(_start, buffered).CopyTo(destination);
        _start = _end = 0;
        destination = destination[buffered..];
        // Big payloads go straight into their buffer: one copy, from the kernel.
        while (destination.Length >= _buffer.Length)
        {
            var n = await ReceiveAsync(destination, cancellationToken).ConfigureAwait(false);
            if (n == 0) throw new EndOfStreamException("peer closed the connection");
            destination = destination[n..];
        }
        while (!destination.IsEmpty)
        {
            await FillAsync(cancellationToken).ConfigureAwait(false);
            var n = Math.Min(destination.Length, _end - _start);
            _buffer.AsSpan(_start, n).CopyTo(destination.Span);
            _start += n;
            destination = destination[n..];
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))] // suspends on every recv that waits: no box per call
    private async ValueTask FillAsync(CancellationToken cancellationToken)
    {
        if (_start == _end) _start = _end = 0;
        var n = await ReceiveAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
        if (n == 0) throw new EndOfStreamException("peer closed the connection");
        _end += n;
    }

    private ValueTask<int> ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var receive = socket.ReceiveAsync(destination, SocketFlags.None, cancellationToken);
        if (!receive.IsCompleted) beforeWaiting?.Invoke();
        return receive;
    }
}
