using Microsoft.Win32.SafeHandles;

namespace ActorCache.Blocks;

/// <summary>
/// A target that can take a range straight from another file, inside the kernel (copy_file_range): the
/// destager moves history from a log segment to a file backing without reading it into user space.
/// </summary>
public interface IFileRangeCopy
{
    /// <summary>
    /// Writes <paramref name="length"/> bytes of <paramref name="source"/> at <paramref name="sourceOffset"/>
    /// to <paramref name="offset"/>, like a write without FUA. False when it did not (the kernel cannot copy
    /// between the two files, or the copy failed part way): then the caller reads and writes the range.
    /// </summary>
    bool TryCopyFrom(SafeFileHandle source, long sourceOffset, long offset, long length);

    /// <summary>
    /// True when the kernel takes its writes one at a time anyway (a regular file: every buffered write holds the
    /// inode's lock), so writers in parallel only contend for that lock.
    /// </summary>
    bool SerializesWrites { get; }
}
