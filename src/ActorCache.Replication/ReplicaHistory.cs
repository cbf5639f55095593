using System.Globalization;
using ActorCache.Cache;

namespace ActorCache.Replication;

/// <summary>
/// A point both sides of a resync after a failover compare against: batch <paramref name="Sequence"/> of the primary
/// volume <paramref name="VolumeId"/> (the former primary's) as numbered in its <paramref name="Incarnation"/> (see
/// <see cref="ReplicaState.PrimaryIncarnation"/>). The new primary followed it through that batch.
/// </summary>
public sealed record HistoryBasis(Guid VolumeId, Guid Incarnation, long Sequence);

/// <summary>A replica's answer to a <see cref="HistoryBasis"/>: the batch it compared at and the blocks it changed since.</summary>
public sealed record HistoryAnswer(long Sequence, System.Collections.BitArray Blocks);

/// <summary>
/// What one replica's log says about how its data may differ from a primary volume's data at one of its batches
/// (DRBD keeps generation UUIDs and bitmaps for this; ActorCache has the log itself). Two replicas that both hold
/// primary volume V through batch K differ at most in the blocks each wrote since it held K, so after a failover the
/// new primary resyncs those instead of everything, for as long as both logs still cover that point.
/// </summary>
/// <remarks>
/// <para>A replica is at a point of V in one of two ways. It is V itself (a former primary: its own log numbers V's
/// batches), or it followed V while UpToDate and kept <see cref="HistoryCheckpoint"/>s that map V's batches to its
/// own log. Anything written to it since, a resync from another primary included, went through its log. Two
/// followers compare only when they followed the same incarnation of V (an id V draws at each open), and their
/// checkpoints are in the log they name.</para>
/// <para>A primary that crashed may reuse the numbers of batches it shipped but lost (they were written, not yet
/// synced): a peer's "batch K" may then not be its batch K. So a node records, at every open of a replicated
/// volume, the last batch it recovered (<see cref="FloorFile"/>, the lowest kept) and compares its own history no
/// later than that, until every peer is in sync with it again (<see cref="ForgetFloor"/>).</para>
/// </remarks>
public sealed class ReplicaHistory(WriteBackCache cache, string stateDirectory)
{
    public const string FloorFile = "own-history-floor";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> Unrecorded = new(StringComparer.Ordinal);

    /// <summary>The newest of this replica's own batches that is durable (sealed): later writes land after it.</summary>
    public long LocalDurable => cache.Barrier.Local.DurableSequence;

    /// <summary>This replica's own volume id and the incarnation its batches are numbered in now (a primary sends them).</summary>
    public Guid VolumeId => cache.VolumeId;

    public Guid Incarnation => cache.Incarnation;

    /// <summary>
    /// The newest batch of <paramref name="volume"/> (as its <paramref name="incarnation"/> numbered it) this replica holds,
    /// changed since only as its log records; or null. An empty incarnation means any: the asker is that volume itself and
    /// compares no later than its own floor, below which every incarnation numbers alike.
    /// </summary>
    public long? PositionIn(Guid volume, Guid incarnation)
    {
        if (volume == cache.VolumeId) return OwnFloor() is { } floor ? Math.Min(LocalDurable, floor) : null;
        var state = Followed(volume, incarnation);
        return state is { Disk: PeerDisk.UpToDate, Checkpoints.Count: > 0 } ? state.AppliedSequence : null;
    }

    /// <summary>The blocks that may differ here from <paramref name="volume"/>'s data at its batch <paramref name="sequence"/>, or null when the log cannot tell.</summary>
    public async Task<System.Collections.BitArray?> ChangedSinceAsync(Guid volume, Guid incarnation, long sequence)
    {
        try
        {
            long local;
            if (volume == cache.VolumeId)
            {
                // This node's own history: only as far as no batch of it may have been renumbered.
                if (OwnFloor() is not { } floor || sequence > floor) return null;
                local = sequence;
            }
            else
            {
                if (Followed(volume, incarnation) is not { } state) return null;
                var checkpoint = state.Checkpoints.LastOrDefault(c => c.PrimarySequence <= sequence);
                if (checkpoint.PrimarySequence <= 0 || checkpoint.PrimarySequence > sequence) return null;
                local = checkpoint.LocalSequence;
            }
            return await cache.ChangedSinceAsync(local).WaitAsync(Patience).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return null; // the cache is closing, its destager is stuck, or the log cannot be read: no narrowing
        }
    }

    /// <summary>
    /// This replica's answer to a primary that compares against <paramref name="asked"/>: null when it holds no point of that
    /// history its log still covers. A basis in the asker's own history (<paramref name="asker"/>) matches any incarnation.
    /// </summary>
    public async Task<HistoryAnswer?> AnswerAsync(HistoryBasis asked, Guid asker)
    {
        if (asked.VolumeId == asker) asked = asked with { Incarnation = Guid.Empty };
        else if (asked.Incarnation == Guid.Empty) return null;
        if (PositionIn(asked.VolumeId, asked.Incarnation) is not { } position) return null;
        try
        {
            // What this replica applied is all in its log before the log is read (its flusher may be behind).
            await cache.FlushAsync().AsTask().WaitAsync(Patience).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return null;
        }
        var sequence = Math.Min(asked.Sequence, position);
        return await ChangedSinceAsync(asked.VolumeId, asked.Incarnation, sequence).ConfigureAwait(false) is { } blocks ? new HistoryAnswer(sequence, blocks) : null;
    }

    /// <summary>How many blocks a changed-blocks answer names.</summary>
    public static long CountOf(System.Collections.BitArray blocks)
    {
        var words = new int[(blocks.Length + 31) / 32];
        blocks.CopyTo(words, 0);
        if (blocks.Length % 32 != 0) words[^1] &= (1 << (blocks.Length % 32)) - 1; // bits past the end count for nothing
        long count = 0;
        foreach (var word in words) count += System.Numerics.BitOperations.PopCount((uint)word);
        return count;
    }

    /// <summary>The state of this replica as a follower of that incarnation of that volume, kept in this log; else null.</summary>
    private ReplicaState? Followed(Guid volume, Guid incarnation)
    {
        ReplicaState? state;
        try
        {
            state = ReplicaState.Read(stateDirectory);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
        // An empty incarnation asked: any recorded one (the asker compares below its floor); one recorded empty: unknown, never.
        return state is not null && state.PrimaryVolumeId == volume && state.PrimaryIncarnation != Guid.Empty &&
               (incarnation == Guid.Empty || state.PrimaryIncarnation == incarnation) && state.LocalVolumeId == cache.VolumeId
            ? state
            : null;
    }

    /// <summary>How far this node's own history is comparable: the floor, or no limit without one; null when the floor could not be recorded.</summary>
    private long? OwnFloor() => Unrecorded.ContainsKey(stateDirectory) ? null : ReadFloor(stateDirectory) ?? long.MaxValue;

    /// <summary>A replicated volume opened here with <paramref name="recovered"/> as its last batch: its own history is compared no later than that (see the remarks).</summary>
    public static void RecordOpen(string stateDirectory, long recovered)
    {
        try
        {
            if (ReadFloor(stateDirectory) is { } floor && floor <= recovered) return;
            Directory.CreateDirectory(stateDirectory);
            AtomicFile.Replace(Path.Combine(stateDirectory, FloorFile), System.Text.Encoding.ASCII.GetBytes(recovered.ToString(CultureInfo.InvariantCulture)));
            Unrecorded.TryRemove(stateDirectory, out _);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Unrecorded[stateDirectory] = true; // not recorded: this node's own history is not compared at all
        }
    }

    /// <summary>Every peer is in sync with this node as primary: no replica holds batches it may have renumbered.</summary>
    public static void ForgetFloor(string stateDirectory)
    {
        if (Unrecorded.ContainsKey(stateDirectory)) return; // the floor of this run is not on disk: keep the older one
        File.Delete(Path.Combine(stateDirectory, FloorFile));
    }

    private static long? ReadFloor(string stateDirectory)
    {
        var path = Path.Combine(stateDirectory, FloorFile);
        try
        {
            return long.Parse(File.ReadAllText(path), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (Exception e) when (e is FormatException or OverflowException or IOException or UnauthorizedAccessException)
        {
            return 0; // damaged or unreadable: compare no later than the beginning (which the log no longer covers: a full resync)
        }
    }
}
