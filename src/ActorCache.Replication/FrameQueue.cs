namespace ActorCache.Replication;

/// <summary>One frame the link holds for its peer: queued, or shipped and not yet durable there. The buffer is from <see cref="FrameBuffers"/>.</summary>
internal struct Frame
{
    /// <summary>Sent first: the frame header, and all of the frame but a shared <see cref="Payload"/>.</summary>
    public byte[] Buffer;
    public int Length;
    /// <summary>A large batch: its bytes, shared with the other links, sent after <see cref="Buffer"/> (null otherwise).</summary>
    public BatchCopy? Payload;
    /// <summary>What the frame puts on the wire: its own bytes and the shared ones.</summary>
    public readonly int WireBytes => Length + (Payload?.Length ?? 0);
    public long Id;
    public FrameKind Kind;
    /// <summary>The newest primary batch sequence at or before this frame in the stream.</summary>
    public long SequenceThrough;
    /// <summary>Resync data: its first block and count; batch: unused (its entries are in the header block).</summary>
    public long Block;
    public int Blocks;
    /// <summary>Batch: where its record is in this node's log (a catch-up after the session reads from there).</summary>
    public long LogAddress;
    public long ShippedAt;
}

/// <summary>
/// The link's send buffer (guarded by the link's lock): frames in stream order, the oldest not yet
/// durable at the peer first, then those shipped, then those waiting to be sent. A ring of structs that
/// grows (rarely) and never allocates per frame; the bytes it holds are bounded by the link.
/// </summary>
internal sealed class FrameQueue
{
    private Frame[] _items = new Frame[64];
    private int _head;

    public int Count { get; private set; }

    /// <summary>Frames from the head that have been handed to the sender.</summary>
    public int Shipped { get; private set; }

    public long Bytes { get; private set; }

    public int Batches { get; private set; }

    public ref Frame this[int index] => ref _items[(_head + index) % _items.Length];

    public long LastId => Count == 0 ? 0 : this[Count - 1].Id;

    public void Enqueue(in Frame frame)
    {
        if (Count == _items.Length)
        {
            var grown = new Frame[_items.Length * 2];
            for (var i = 0; i < Count; i++) grown[i] = this[i];
            _items = grown;
            _head = 0;
        }
        _items[(_head + Count) % _items.Length] = frame;
        Count++;
        Bytes += frame.WireBytes;
        if (frame.Kind == FrameKind.Batch) Batches++;
    }

    /// <summary>The next frame to send, marked shipped now; false when every frame has been handed out.</summary>
    public bool TryTakeNext(long now, out Frame frame)
    {
        if (Shipped == Count)
        {
            frame = default;
            return false;
        }
        ref var next = ref this[Shipped++];
        next.ShippedAt = now;
        frame = next;
        return true;
    }

    /// <summary>Index of frame <paramref name="id"/>, or -1 when it is not held (ids are consecutive in the queue).</summary>
    public int IndexOf(long id)
    {
        if (Count == 0) return -1;
        var index = id - this[0].Id;
        return index >= 0 && index < Count ? (int)index : -1;
    }

    /// <summary>Removes the oldest frame and gives its buffer back (<see cref="FrameBuffers"/>).</summary>
    public Frame Dequeue()
    {
        var frame = this[0];
        this[0] = default;
        _head = (_head + 1) % _items.Length;
        Count--;
        if (Shipped > 0) Shipped--;
        Bytes -= frame.WireBytes;
        if (frame.Kind == FrameKind.Batch) Batches--;
        FrameBuffers.Return(frame.Buffer);
        frame.Payload?.Release();
        return frame;
    }
}
