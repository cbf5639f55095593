using System.Buffers;
using ActorCache.Blocks;

namespace ActorCache.Nbd;

/// <summary>
/// One in-flight request of a connection, reused for the connection's lifetime. It owns a pinned
/// buffer with room for a reply header in front of the payload, so a READ reply leaves in one send
/// and a WRITE payload is received straight into the memory the target reads from.
/// </summary>
internal sealed class NbdRequest : IThreadPoolWorkItem
{
    /// <summary>Room before the payload for the largest reply header (OFFSET_DATA chunk, 28 bytes).</summary>
    public const int HeaderRoom = 32;
    public const int InlinePayload = 64 << 10;
    public const int MaxExtents = 256;

    private readonly NbdConnection _connection;
    /// <summary>
    /// Requests up to this size keep their large buffer between uses, so streaming 1 MiB I/O reuses it
    /// instead of renting a 2 MiB pool array per request (measured: a third less CPU per MiB on J6). At
    /// most 64 MiB per connection (64 requests in flight); larger requests rent from the shared pool.
    /// </summary>
    public const int KeptPayload = 1 << 20;

    private readonly byte[] _inline = GC.AllocateArray<byte>(HeaderRoom + InlinePayload, pinned: true);
    private byte[]? _kept;
    private byte[]? _rented;
    private byte[]? _current;

    public NbdRequest(NbdConnection connection)
    {
        _connection = connection;
        _commitDone = OnCommitDone;
    }

    private ValueTask _commit;
    private readonly Action _commitDone; // made once: registering it allocates nothing

    /// <summary>
    /// Replies once <paramref name="commit"/> completes (a FUA write's or a FLUSH's wait for the log), on whatever
    /// thread completes it. Not an async method: its box would be allocated per request, since it is rented on the
    /// receive loop and given back on the flusher's thread.
    /// </summary>
    public void ReplyWhenDone(ValueTask commit)
    {
        _commit = commit;
        commit.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_commitDone);
    }

    private void OnCommitDone()
    {
        var commit = _commit;
        _commit = default;
        _connection.CompleteCommitted(this, commit);
    }

    public NbdRequestHeader Header;
    public NbdError Error;
    public readonly AllocationExtent[] Extents = new AllocationExtent[MaxExtents];
    public int ExtentCount;

    /// <summary>A WRITE whose payload was received straight into the target's memory instead of <see cref="Payload"/>.</summary>
    public readonly StagedWrite Staged = new();

    /// <summary>Where the encoded reply sits in <see cref="Buffer"/>.</summary>
    public int ReplyStart, ReplyLength;

    public byte[] Buffer => _current ?? _inline;

    /// <summary>The payload area for the current request's length.</summary>
    public Memory<byte> Payload => Buffer.AsMemory(HeaderRoom, (int)Header.Length);

    public ReadOnlyMemory<byte> Reply => Buffer.AsMemory(ReplyStart, ReplyLength);

    /// <summary>Makes sure the buffer holds <paramref name="payload"/> bytes: the inline buffer, the kept one, or one borrowed from the shared pool.</summary>
    public void Reserve(int payload)
    {
        if (payload <= InlinePayload) return;
        if (payload <= KeptPayload)
        {
            // Allocated once per request object at the largest kept size, so it never grows again.
            _kept ??= GC.AllocateUninitializedArray<byte>(HeaderRoom + KeptPayload, pinned: true);
            _current = _kept;
            return;
        }
        _current = _rented = ArrayPool<byte>.Shared.Rent(HeaderRoom + payload);
    }

    /// <summary>The length of the shared pool's array this request holds, 0 for none (the connection's budget counts it).</summary>
    public int RentedBytes => _rented?.Length ?? 0;

    public void Reset()
    {
        if (_rented is not null)
        {
            var length = _rented.Length;
            ArrayPool<byte>.Shared.Return(_rented);
            _rented = null;
            _connection.LargeBufferReturned(length);
        }
        _current = null;
        Error = NbdError.None;
        ExtentCount = 0;
        ReplyStart = ReplyLength = 0;
    }

    void IThreadPoolWorkItem.Execute() => _ = _connection.ExecuteAsync(this);
}
