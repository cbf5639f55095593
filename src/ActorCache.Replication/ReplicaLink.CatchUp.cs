using System.Diagnostics;
using ActorCache.Cache;
using Microsoft.Extensions.Logging;

namespace ActorCache.Replication;

/// <summary>
/// Catch-up from the log: a peer back after an ordered session is sent the batches it missed, read back from this node's
/// log as they were written, in order; the bitmap resync is the fallback (see the README, "Catch-up from the log").
/// </summary>
public sealed partial class ReplicaLink
{
    /// <summary>
    /// Where a catch-up reads from: the first batch the peer lacks, and a batch at or before it the log was seen to hold.
    /// <paramref name="OverlapThrough"/>: the last batch the previous session queued; the peer may have applied batches up to
    /// it without making them durable, so resending them from <paramref name="Start"/> rewinds blocks until it is passed.
    /// </summary>
    private sealed record CatchUpFrom(long Start, long Address, long Sequence, long OverlapThrough);

    /// <summary>
    /// The batch a catch-up from the log starts at, or null when the peer needs a resync: the last session shipped batches
    /// in order and nothing else (so the bitmap holds only blocks of batches the peer lacks), nothing was marked since but
    /// batches, and the peer says it is UpToDate with this volume's batches, no further than that session took it.
    /// </summary>
    private CatchUpFrom? CatchUpStartLocked(ReplicaState? peer)
    {
        if (_options.CatchUpMaxLogRatio <= 0 || _orderedThrough < 0 || _foreignMarks != _marksSeen || _bitmap.Count == 0) return null;
        if (peer is not { Disk: PeerDisk.UpToDate } || peer.PrimaryVolumeId != _volumeId) return null;
        // The peer's state file may trail what it acknowledged durable (written at most once a second), never lead it; a
        // batch beyond what the last session queued for it is not this run's numbering (a crash renumbers): it is resynced.
        if (peer.AppliedSequence > _orderedQueued) return null;
        var start = Math.Max(peer.AppliedSequence, _orderedThrough) + 1;
        var (address, sequence) = _tailAddress >= 0 ? (_tailAddress, _tailSequence) : (_markStartAddress, _markStartSequence);
        if (address < 0 || sequence > start) return null;
        // Overwrites, small batches (a header each) and writes while it runs make the log longer than the blocks it changed.
        var log = _lastBatchEnd - address;
        if (log > _options.CatchUpMaxLogRatio * _bitmap.Count * BlockSize)
        {
            _catchUpDeclined = $"; the {log} bytes of log since it left are more than {_options.CatchUpMaxLogRatio:0.##}x that, so the blocks are resynced";
            return null;
        }
        return new CatchUpFrom(start, address, sequence, _orderedQueued);
    }

    /// <summary>Batches go to the peer as they are published from here on: what is marked later starts a new run.</summary>
    private void StreamLiveLocked() => _markStartAddress = -1;

    /// <summary>
    /// At a session's end (before its unacknowledged frames are marked): what the peer holds for certain, and where in the
    /// log its first missing batch is, for a catch-up at the next connect.
    /// </summary>
    private void KeepCatchUpPointLocked()
    {
        _orderedThrough = _tailAddress = -1;
        if (_sessionOrdered && _foreignMarks == _marksSeen)
        {
            _orderedThrough = _durableSequence;
            // Never lowered: a catch-up that ended before the peer took its overlap's begin leaves the peer holding batches up to
            // the older bound (extra brackets later cost a resent batch or two inside a begin and end, never a torn peer).
            _orderedQueued = Math.Max(_orderedQueued, Math.Max(_queuedThrough, _durableSequence));
            for (var i = 0; i < _frames.Count; i++)
            {
                ref var frame = ref _frames[i];
                if (frame.Kind != FrameKind.Batch) continue;
                (_tailAddress, _tailSequence) = (frame.LogAddress, frame.SequenceThrough);
                break;
            }
            if (_tailAddress < 0 && _catchingUp) (_tailAddress, _tailSequence) = (_catchUpNextAddress, _catchUpNextSequence);
            // Else every shipped batch is durable there: the first batch marked since is the first it lacks.
        }
        _sessionOrdered = _catchingUp = false;
        _catchUpMarks = null;
    }

    /// <summary>
    /// At a clean stop: where the peer stands in the log, for a catch-up after this node restarts (the bitmap's clean save
    /// follows). Only an ordered point is kept; without one the peer is resynced from the bitmap, as after a crash.
    /// </summary>
    private void SaveCatchUpPointLocked()
    {
        if (_orderedThrough < 0 || _foreignMarks != _marksSeen || _bitmap.Count == 0)
        {
            DeleteCatchUpPoint();
            return;
        }
        try
        {
            new CatchUpPoint(_volumeId, _bitmap.Checksum(), _lastSequence, _orderedThrough, _orderedQueued, _tailAddress, _tailSequence, _markStartAddress, _markStartSequence,
                _lastBatchEnd).Save(_options.StateDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("volume {Volume}: where {Peer} stands in the log could not be saved ({Message}); after the restart it is resynced, not caught up",
                _options.Volume, _options.PeerNode, e.Message);
            DeleteCatchUpPoint();
        }
    }

    /// <summary>At a start after a clean stop (the bitmap clean and of the same last batch): where the peer stood, as that run kept it.</summary>
    private void RestoreCatchUpPointLocked(CatchUpPoint point)
    {
        _orderedThrough = point.OrderedThrough;
        _orderedQueued = Math.Max(_orderedQueued, point.OrderedQueued);
        (_tailAddress, _tailSequence) = (point.TailAddress, point.TailSequence);
        // Batches published before Start read the files were marked after the saved first one.
        if (point.MarkStartAddress >= 0) (_markStartAddress, _markStartSequence) = (point.MarkStartAddress, point.MarkStartSequence);
        _lastBatchEnd = Math.Max(_lastBatchEnd, point.LastBatchEnd);
    }

    private void DeleteCatchUpPoint()
    {
        try
        {
            CatchUpPoint.Delete(_options.StateDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("volume {Volume}: {Message}", _options.Volume, e.Message);
        }
    }

    /// <summary>
    /// Ships the batches the peer missed from this node's log, raw and in order (as they were published), while new batches
    /// go into the bitmap; once it has read up to the newest batch it switches to live streaming under the lock that orders
    /// the send buffer, and the bitmap (only those batches' blocks) is cleared. Where the log no longer holds a batch (destaged
    /// and its segment reused) or something else was marked meanwhile, it falls back to resyncing the bitmap.
    /// </summary>
    private async Task CatchUpAsync(long session, CatchUpFrom from, CancellationToken cancellationToken)
    {
        await Task.Yield(); // the log reads below (the header scan can take a while) run on the pool, not on the session's runner
        if (BeforeCatchUp is { } hook) await hook().ConfigureAwait(false);
        var reader = _cache.OpenLogTail(from.Address, from.Sequence);
        string? fallback = reader.SkipTo(from.Start) ? null : $"batch {reader.Sequence} is no longer in the log";
        var overlap = false;
        long through = -1;
        if (fallback is null)
            lock (_gate)
            {
                if (session != _session || !_streaming) return;
                (_catchUpStart, _catchUpNextAddress, _catchUpNextSequence) = (reader.Address, reader.Address, reader.Sequence);
                // What the batches up to the newest wrote is read next; what later ones write is gathered here meanwhile.
                through = _lastSequence;
                _catchUpMarks = new OutOfSyncBitmap(_bitmap.Blocks);
                if (from.Start <= from.OverlapThrough && from.OverlapThrough <= _lastSequence)
                {
                    // The peer may hold (applied, not durable) batches up to OverlapThrough: resending from Start rewinds blocks that
                    // a later one of those wrote, until that one comes again. Meanwhile it must not count itself consistent (nor
                    // keep history checkpoints): it is told a resync begins, and that it ends with OverlapThrough.
                    EnqueueControlLocked(FrameKind.ResyncBegin, 0, from.Start - 1);
                    _peerDisk = PeerDisk.Inconsistent;
                    overlap = true;
                }
            }
        CatchUpIndex? index = null;
        if (fallback is null) (index, fallback) = IndexCatchUp(session, reader.Address, reader.Sequence, through, cancellationToken);
        // New writes add to what is left to ship (unlike a resync, which they do not touch): a peer that does not gain on
        // them within a while is resynced instead, which ends.
        var (gainCheckedAt, leftThen) = (Stopwatch.GetTimestamp(), long.MaxValue);
        while (fallback is null)
        {
            while (true)
            {
                lock (_gate)
                {
                    if (session != _session || !_streaming) return;
                    if (_frames.Bytes <= _options.MaxLagBytes / 2) break;
                }
                await Task.Delay(2, cancellationToken).ConfigureAwait(false);
            }
            lock (_gate)
            {
                if (session != _session || !_streaming) return;
                if (reader.Sequence > _lastSequence)
                {
                    if (_foreignMarks == _marksSeen)
                    {
                        CaughtUpLocked();
                        return;
                    }
                    fallback = "blocks were marked out of sync meanwhile";
                    break;
                }
                if (Stopwatch.GetElapsedTime(gainCheckedAt) >= _options.CatchUpGainPeriod)
                {
                    var left = _lastBatchEnd - reader.Address;
                    if (left >= leftThen)
                    {
                        fallback = $"it did not gain on the writes in {_options.CatchUpGainPeriod.TotalSeconds:0.#} s ({left} bytes of log left)";
                        break;
                    }
                    (gainCheckedAt, leftThen) = (Stopwatch.GetTimestamp(), left);
                }
            }
            var sequence = reader.Sequence;
            var size = reader.NextSize();
            if (size < 0)
            {
                fallback = $"batch {sequence} is no longer in the log";
                break;
            }
            var buffer = FrameBuffers.Rent(FrameHeader.Size + size);
            var queued = false;
            try
            {
                if (!reader.TryReadNext(buffer.AsSpan(FrameHeader.Size, size)))
                {
                    fallback = $"batch {sequence} could not be read back from the log (its segment was reused)";
                    break;
                }
                lock (_gate)
                {
                    if (session != _session || !_streaming) return;
                    var id = _nextFrameId++;
                    new FrameHeader(FrameKind.Batch, size / BlockSize, id, 0, 0).Write(buffer);
                    _frames.Enqueue(new Frame
                    {
                        Buffer = buffer, Length = FrameHeader.Size + size, Id = id, Kind = FrameKind.Batch, SequenceThrough = sequence,
                        LogAddress = reader.Address - size,
                    });
                    queued = true;
                    _queuedThrough = sequence;
                    if (overlap && sequence == from.OverlapThrough)
                    {
                        EnqueueControlLocked(FrameKind.ResyncDone, sequence, sequence); // consistent again: the peer holds exactly batch N
                        _peerDisk = PeerDisk.Outdated;
                        overlap = false;
                    }
                    (_catchUpNextAddress, _catchUpNextSequence) = (reader.Address, reader.Sequence);
                    _resyncDone = _catchUpNextAddress - _catchUpStart;
                    _rateBytes += size;
                }
            }
            finally
            {
                if (!queued) FrameBuffers.Return(buffer);
            }
            _sendSignal.Set();
            await ThrottleAsync(cancellationToken).ConfigureAwait(false);
        }
        long marked;
        lock (_gate)
        {
            if (session != _session || !_streaming) return;
            marked = _bitmap.Count;
            // The bitmap still holds every block of the batches the peer lacked: resyncing it is complete, if not as short. With
            // the index, and nothing marked since the connect but batches (a verify's or a full mark is in no index), only the
            // blocks of the batches not sent are: the peer takes those sent (in order, ahead of the resync's begin), and a
            // session that ends first marks them again.
            if (index is not null && _catchUpMarks is { } since && _foreignMarks == _marksSeen)
            {
                _bitmap.Clear(0, _bitmap.Blocks);
                index.MarkFrom(reader.Sequence, _bitmap);
                _bitmap.Add(since);
            }
            _catchUpMarks = null;
            _catchingUp = _sessionOrdered = _catchUpSession = false;
            _peerDisk = PeerDisk.Inconsistent;
            _resyncDone = 0;
            _resyncTotal = _bitmap.Count * BlockSize;
            _resyncStarted = Stopwatch.GetTimestamp();
            StreamLiveLocked();
            EnqueueControlLocked(FrameKind.ResyncBegin, 0);
        }
        // Any failure to read counts as a batch the log cannot give back: a resync follows, not another catch-up.
        if (reader.Failure is { } failure) fallback += $"; reading the log failed: {failure}";
        _logger.LogInformation("volume {Volume}: the catch-up of {Peer} from the log stops ({Reason}); the {Bytes} bytes it misses are resynced instead " +
                               "({Marked} bytes were marked)", _options.Volume, _options.PeerNode, fallback, Status.OutOfSyncBytes, marked * BlockSize);
        _sendSignal.Set();
        await ResyncAsync(session, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads what the batches from the catch-up's start (at <paramref name="address"/>) through <paramref name="through"/>
    /// wrote, from their headers, before the log may recycle any of them (see <see cref="CatchUpIndex"/>). Null when the log
    /// is too long to index or the session ended; with the reason when a batch is gone already (the catch-up cannot ship it either).
    /// </summary>
    private (CatchUpIndex? Index, string? Gone) IndexCatchUp(long session, long address, long sequence, long through, CancellationToken cancellationToken)
    {
        var scan = _cache.OpenLogTail(address, sequence);
        var index = new CatchUpIndex();
        while (scan.Sequence <= through)
        {
            var next = scan.Sequence;
            if (!scan.TrySkipNext(out var entries)) break;
            if (!index.Add(next, entries)) return (null, null);
            if ((next & 1023) == 0)
            {
                if (cancellationToken.IsCancellationRequested) return (null, null);
                lock (_gate)
                    if (session != _session || !_streaming) return (null, null);
            }
        }
        if (scan.Sequence > through) return (index, null);
        return (null, $"batch {scan.Sequence} is no longer in the log" + (scan.Failure is { } failure ? $"; reading the log failed: {failure}" : ""));
    }

    /// <summary>Every batch the peer lacked is queued: batches stream live from here, and the bitmap (their blocks only) is cleared.</summary>
    private void CaughtUpLocked()
    {
        _catchingUp = false;
        _catchUpMarks = null;
        StreamLiveLocked();
        _bitmap.Clear(0, _bitmap.Blocks);
        _resyncTotal = _resyncDone;
        _receivedSequence = Math.Max(_receivedSequence, _durableSequence);
        if (_durableFrame >= _nextFrameId - 1) InSyncLocked(); // nothing queued, or all of it durable there already
        else _resyncDoneFrame = _nextFrameId - 1;
    }
}
