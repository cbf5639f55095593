namespace ActorCache.Blocks;

/// <summary>
/// A WRITE whose payload a front receives straight into memory the target owns (the cache's ring
/// slots), so the bytes are copied once, from the socket, and never again on their way to the log.
/// A front keeps one per in-flight request and reuses it: staging fills <see cref="Segments"/>,
/// the front fills them in order, then commits (or abandons) the write through the same target.
/// </summary>
public sealed class StagedWrite
{
    private Memory<byte>[] _segments = new Memory<byte>[16];
    private int[] _tokens = new int[16];

    public long Offset { get; private set; }
    public int Length { get; private set; }

    /// <summary>How many segments the payload is split into; together they are exactly <see cref="Length"/> bytes long.</summary>
    public int SegmentCount { get; private set; }

    /// <summary>The target that staged the write; null when nothing is staged.</summary>
    public IBlockTarget? StagedBy { get; private set; }

    public ReadOnlySpan<Memory<byte>> Segments => _segments.AsSpan(0, SegmentCount);

    public Memory<byte> Segment(int index) => _segments[index];

    /// <summary>Per-block values the staging target keeps for itself (for the cache: ring slot numbers).</summary>
    public Span<int> Tokens => _tokens.AsSpan(0, TokenCount);

    public int TokenCount { get; private set; }

    /// <summary>The same tokens as memory, for a staging target that fills them across an await.</summary>
    public Memory<int> TokenMemory => _tokens.AsMemory(0, TokenCount);

    /// <summary>Called by the staging target: sizes the write (arrays grow once per request object, never per request).</summary>
    public Span<int> Begin(IBlockTarget stagedBy, long offset, int length, int tokens)
    {
        if (_tokens.Length < tokens)
        {
            _tokens = new int[Math.Max(tokens, _tokens.Length * 2)];
            _segments = new Memory<byte>[_tokens.Length];
        }
        StagedBy = stagedBy;
        Offset = offset;
        Length = length;
        TokenCount = tokens;
        SegmentCount = 0;
        return _tokens.AsSpan(0, tokens);
    }

    /// <summary>Called by the staging target: appends the next piece of payload memory (neighbouring pieces are joined by the target).</summary>
    public void AddSegment(Memory<byte> segment) => _segments[SegmentCount++] = segment;

    /// <summary>Copies the payload, segment after segment, to the start of <paramref name="destination"/> (a fallback that cannot commit in place).</summary>
    public void CopyTo(Span<byte> destination)
    {
        var at = 0;
        foreach (var segment in Segments)
        {
            segment.Span.CopyTo(destination[at..]);
            at += segment.Length;
        }
    }

    /// <summary>Forgets the staged write (after commit or abandon).</summary>
    public void Clear()
    {
        StagedBy = null;
        SegmentCount = TokenCount = 0;
        Offset = Length = 0;
    }
}
