using System.Globalization;
using ActorCache.Cache;

namespace ActorCache.Replication;

/// <summary>
/// A point both sides of a resync after a failover compare against: batch <paramref name="Sequence"/> of the primary
/// volume <paramref name="VolumeId"/> (the former primary's). The new primary followed it through that batch.
/// </summary>
public sealed record HistoryBasis(Guid VolumeId, long Sequence);

/// <summary>A replica's answer to a <see cref="HistoryBasis"/>: the batch it compared at and the blocks it changed since.</summary>
public sealed record HistoryAnswer(long Sequence, SortedSet<long> Blocks);

/// <summary>
/// What one replica's log says about how its data may differ from a primary volume's data at one of its batches
/// (DRBD keeps generation UUIDs and bitmaps for this; ActorCache has the log itself). Two replicas that both hold
/// primary volume V through batch K differ at most in the blocks each wrote since it held K, so after a failover the
/// new primary resyncs those instead of everything, for as long as both logs still cover that point.
/// </summary>
/// <remarks>
/// <para>A replica is at a point of V in one of two ways. It is V itself (a former primary: its own log numbers V's
/// batches), or it followed V while UpToDate and kept <see cref="HistoryCheckpoint"/>s that map V's batches to its
/// own log. Anything written to it since, a resync from another primary included, went through its log.</para>
/// <para>A primary that crashed may reuse the numbers of batches it shipped but lost (they were written, not yet
/// synced): a peer's "batch K" may then not be its batch K. So a node records, at every open of a replicated
/// volume, the last batch it recovered (<see cref="FloorFile"/>, the lowest kept) and compares its own history no
/// later than that, until every peer is in sync with it again (<see cref="ForgetFloor"/>).</para>
/// </remarks>
public sealed class ReplicaHistory(WriteBackCache cache, string stateDirectory)
{
    public const string FloorFile = "own-history-floor";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>The newest of this replica's own batches that is durable (sealed): later writes land after it.</summary>
    public long LocalDurable => cache.Barrier.Local.DurableSequence;

    /// <summary>The newest batch of <paramref name="volume"/> this replica holds (changed since only as its log records), or null.</summary>
    public long? PositionIn(Guid volume)
    {
        if (volume == cache.VolumeId) return Math.Min(LocalDurable, ReadFloor(stateDirectory) ?? long.MaxValue);
        var state = ReadState();
        return state is { Disk: PeerDisk.UpToDate, Checkpoints.Count: > 0 } && state.PrimaryVolumeId == volume ? state.AppliedSequence : null;
    }

    /// <summary>The blocks that may differ here from <paramref name="volume"/>'s data at its batch <paramref name="sequence"/>, or null when the log cannot tell.</summary>
    public async Task<SortedSet<long>?> ChangedSinceAsync(Guid volume, long sequence)
    {
        long local;
        if (volume == cache.VolumeId) local = sequence;
        else
        {
            var state = ReadState();
            if (state is null || state.PrimaryVolumeId != volume) return null;
            var checkpoint = state.Checkpoints.LastOrDefault(c => c.PrimarySequence <= sequence);
            if (checkpoint.PrimarySequence <= 0 || checkpoint.PrimarySequence > sequence) return null;
            local = checkpoint.LocalSequence;
        }
        try
        {
            return await cache.ChangedSinceAsync(local).WaitAsync(Patience).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return null; // the cache is closing, or its destager is stuck: no narrowing
        }
    }

    /// <summary>This replica's answer to a new primary that compares against <paramref name="asked"/>: null when it holds no point of that volume its log still covers.</summary>
    public async Task<HistoryAnswer?> AnswerAsync(HistoryBasis asked)
    {
        if (PositionIn(asked.VolumeId) is not { } position) return null;
        var sequence = Math.Min(asked.Sequence, position);
        return await ChangedSinceAsync(asked.VolumeId, sequence).ConfigureAwait(false) is { } blocks ? new HistoryAnswer(sequence, blocks) : null;
    }

    private ReplicaState? ReadState()
    {
        try
        {
            return ReplicaState.Read(stateDirectory);
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>A replicated volume opened here with <paramref name="recovered"/> as its last batch: its own history is compared no later than that (see the remarks).</summary>
    public static void RecordOpen(string stateDirectory, long recovered)
    {
        if (ReadFloor(stateDirectory) is { } floor && floor <= recovered) return;
        Directory.CreateDirectory(stateDirectory);
        AtomicFile.Replace(Path.Combine(stateDirectory, FloorFile), System.Text.Encoding.ASCII.GetBytes(recovered.ToString(CultureInfo.InvariantCulture)));
    }

    /// <summary>Every peer is in sync with this node as primary: no replica holds batches it may have renumbered.</summary>
    public static void ForgetFloor(string stateDirectory) => File.Delete(Path.Combine(stateDirectory, FloorFile));

    private static long? ReadFloor(string stateDirectory)
    {
        var path = Path.Combine(stateDirectory, FloorFile);
        try
        {
            return long.Parse(File.ReadAllText(path), CultureInfo.InvariantCulture);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
        catch (FormatException)
        {
            return 0; // damaged: compare no later than the beginning (which the log no longer covers: a full resync)
        }
    }
}
