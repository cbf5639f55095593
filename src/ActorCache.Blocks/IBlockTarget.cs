namespace ActorCache.Blocks;

/// <summary>
/// One layer of a volume's stack (DESIGN §1). Each target knows only the one below it, the way
/// device-mapper targets stack. Offsets and lengths are in bytes; the front has already checked
/// range and alignment, so targets may assume <c>offset + length &lt;= Size</c>.
/// Failures are reported by throwing <see cref="BlockTargetException"/>.
/// </summary>
public interface IBlockTarget : IAsyncDisposable
{
    /// <summary>Size of the device in bytes.</summary>
    long Size { get; }

    /// <summary>What the target can do beyond plain read and write.</summary>
    TargetCapabilities Capabilities { get; }

    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken = default);

    /// <summary>Writes <paramref name="data"/>; with <paramref name="fua"/> the write is durable when this completes.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken = default);

    /// <summary>Makes every write completed before this call durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken = default);

    /// <summary>Discards a range: later reads return zeroes or old data is no longer needed (here: zeroes).</summary>
    ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken cancellationToken = default);

    /// <summary>
    /// Makes a range read as zeroes. <paramref name="mayDeallocate"/> allows punching a hole;
    /// with <paramref name="fastOnly"/> the target fails with <see cref="BlockError.NotSupported"/>
    /// instead of falling back to writing zero bytes.
    /// </summary>
    ValueTask WriteZeroesAsync(long offset, long length, bool mayDeallocate, bool fastOnly, bool fua,
        CancellationToken cancellationToken = default);

    /// <summary>
    /// Describes allocation from <paramref name="offset"/> on, filling <paramref name="extents"/> in order;
    /// returns how many were filled. The extents cover at most <paramref name="length"/> bytes and at least one byte.
    /// </summary>
    ValueTask<int> GetAllocationAsync(long offset, long length, Memory<AllocationExtent> extents,
        CancellationToken cancellationToken = default);

    /// <summary>Hint that a range will be read soon.</summary>
    ValueTask PrefetchAsync(long offset, long length, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads only if it can be done at once without waiting for a disk (the data is in memory or the
    /// page cache); false means nothing useful was read and <see cref="ReadAsync"/> must be used. Lets a
    /// front answer cached reads on the thread that received them, without a hand-off.
    /// </summary>
    bool TryReadWithoutWaiting(long offset, Span<byte> destination) => false;

    /// <summary>
    /// True when <see cref="FlushAsync"/> never blocks its caller's thread (it queues the FLUSH and
    /// completes later, like the write-back cache's group commit): a front may then call it on the
    /// thread that received the request instead of handing it to the pool first.
    /// </summary>
    bool FlushesWithoutBlocking => false;

    /// <summary>
    /// Offers to receive a WRITE's payload straight into the target's own memory (see <see cref="StagedWrite"/>).
    /// False when this target cannot for this write (the front then uses its own buffer and <see cref="WriteAsync"/>).
    /// May wait for memory (backpressure) and throws like a write would when it cannot accept one.
    /// </summary>
    ValueTask<bool> TryStageWriteAsync(long offset, int length, StagedWrite staged, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(false);

    /// <summary>Performs a staged write once its payload is in place; like <see cref="WriteAsync"/>, durable on completion with <paramref name="fua"/>.</summary>
    ValueTask CommitStagedWriteAsync(StagedWrite staged, bool fua, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException($"{GetType().Name} does not stage writes");

    /// <summary>Gives back the memory of a staged write that will not be committed (the client went away mid-payload).</summary>
    void AbandonStagedWrite(StagedWrite staged) => throw new NotSupportedException($"{GetType().Name} does not stage writes");

    /// <summary>
    /// Control (DESIGN §1), like device-mapper's target messages: the message goes down the stack until a
    /// layer that understands it handles it (switch the cache's mode, say). False when no layer did.
    /// </summary>
    ValueTask<bool> TrySendAsync(TargetMessage message, CancellationToken cancellationToken = default) => ValueTask.FromResult(false);

    /// <summary>Status, like device-mapper's: each layer adds what it knows about itself, then asks the one below.</summary>
    void CollectStatus(TargetStatus status)
    {
    }

    /// <summary>
    /// Closes the stack, top to bottom: a layer that holds acknowledged writes makes them durable first,
    /// and says how many bytes of them it could not (a log and backing that both refuse them).
    /// </summary>
    async ValueTask<CloseReport> CloseAsync()
    {
        await DisposeAsync().ConfigureAwait(false);
        return CloseReport.Durable;
    }
}

/// <summary>How a stack closed: bytes of acknowledged writes it could not make durable (0 when every one is durable), and why.</summary>
public sealed record CloseReport(long NotDurableBytes, string? Problem)
{
    public static readonly CloseReport Durable = new(0, null);

    /// <summary>Writes may have been lost but how many bytes is not known (a backing whose final sync failed).</summary>
    public const long UnknownBytes = -1;

    public bool IsDurable => NotDurableBytes == 0 && Problem is null;
}

/// <summary>A control request for one layer of a stack (see <see cref="IBlockTarget.TrySendAsync"/>); layers define their own.</summary>
public abstract record TargetMessage;

/// <summary>
/// What a stack says about itself, collected top to bottom (see <see cref="IBlockTarget.CollectStatus"/>):
/// each layer adds a status record of its own type, and a layer that refuses writes says why.
/// </summary>
public sealed class TargetStatus
{
    private readonly List<object> _layers = [];

    /// <summary>Why the stack refuses writes (the first layer to say so), or null.</summary>
    public string? ReadOnlyReason { get; private set; }

    public void Add(object layerStatus) => _layers.Add(layerStatus);

    public void RefuseWrites(string reason) => ReadOnlyReason ??= reason;

    /// <summary>The status record of type <typeparamref name="T"/> a layer added, or null when no layer has one.</summary>
    public T? Find<T>() where T : class => _layers.OfType<T>().FirstOrDefault();
}

[Flags]
public enum TargetCapabilities
{
    None = 0,
    /// <summary>Trim really deallocates (punches holes).</summary>
    Trim = 1,
    /// <summary>Write-zeroes is cheap (no data written).</summary>
    FastZero = 2,
    /// <summary>Allocation status is meaningful (sparse backing).</summary>
    Allocation = 4,
    ReadOnly = 8,
}

/// <summary>A run of bytes with one allocation state, as NBD's base:allocation context reports it.</summary>
public readonly record struct AllocationExtent(long Length, AllocationState State);

[Flags]
public enum AllocationState : uint
{
    Data = 0,
    /// <summary>Not allocated on the device.</summary>
    Hole = 1,
    /// <summary>Reads as zeroes.</summary>
    Zero = 2,
}
