namespace ActorCache.Blocks;

/// <summary>What went wrong in a target, in terms a front can map to its wire errors (NBD errno values).</summary>
public enum BlockError
{
    Io,
    NoSpace,
    InvalidRequest,
    ReadOnly,
    NotSupported,
    ShuttingDown,
}

/// <summary>A failed block operation. The message says what happened and, where a user can act, what to do.</summary>
public sealed class BlockTargetException(BlockError error, string message, Exception? inner = null)
    : IOException(message, inner)
{
    public BlockError Error { get; } = error;
}

/// <summary>Throw sites kept out of line so the callers' fast paths stay small.</summary>
public static class BlockThrow
{
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void Error(BlockError error, string message, Exception? inner = null) =>
        throw new BlockTargetException(error, message, inner);

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void FromErrno(int errno, string operation, string path) => throw ErrnoException(errno, operation, path);

    /// <summary>The exception <see cref="FromErrno"/> throws, for callers that wrap it (<paramref name="inner"/>) or throw it themselves.</summary>
    public static BlockTargetException ErrnoException(int errno, string operation, string path, Exception? inner = null)
    {
        var error = errno switch
        {
            LibC.ENOSPC or LibC.EDQUOT => BlockError.NoSpace,
            LibC.EROFS or LibC.EPERM or LibC.EACCES => BlockError.ReadOnly,
            LibC.EOPNOTSUPP => BlockError.NotSupported,
            LibC.EINVAL => BlockError.InvalidRequest,
            _ => BlockError.Io,
        };
        return new BlockTargetException(error, $"{operation} on {path} failed: {LibC.Describe(errno)} (errno {errno})", inner);
    }
}
