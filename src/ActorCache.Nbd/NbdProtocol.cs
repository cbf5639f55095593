namespace ActorCache.Nbd;

/// <summary>Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md), fixed newstyle only.</summary>
public static class NbdProtocol
{
    public const ulong InitMagic = 0x4e42444d41474943;        // "NBDMAGIC"
    public const ulong OptionMagic = 0x49484156454F5054;      // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x3e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    public const int RequestHeaderSize = 28;
    public const int SimpleReplyHeaderSize = 16;
    public const int StructuredReplyHeaderSize = 20;

    /// <summary>Largest payload accepted or sent in one request (the advertised maximum block size).</summary>
    public const int MaxPayload = 32 << 20;
    public const int MinBlockSize = 512;
    public const int PreferredBlockSize = 4096;
    /// <summary>Option data beyond this is not a real client; the connection is dropped.</summary>
    public const int MaxOptionLength = 64 << 10;
    public const int MaxNameLength = 4096;
}

[Flags]
public enum HandshakeFlags : ushort { FixedNewstyle = 1 << 0, NoZeroes = 1 << 1 }

[Flags]
public enum ClientFlags : uint { FixedNewstyle = 1 << 0, NoZeroes = 1 << 1 }

public enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
}

public enum OptionReply : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsupported = 0x80000001,
    ErrPolicy = 0x80000002,
    ErrInvalid = 0x80000003,
    ErrPlatform = 0x80000004,
    ErrTlsRequired = 0x80000005,
    ErrUnknown = 0x80000006,
    ErrShutdown = 0x80000007,
    ErrBlockSizeRequired = 0x80000008,
    ErrTooBig = 0x80000009,
}

public enum InfoType : ushort { Export = 0, Name = 1, Description = 2, BlockSize = 3 }

[Flags]
public enum TransmissionFlags : ushort
{
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
}

public enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
}

[Flags]
public enum CommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    DontFragment = 1 << 2,
    ReqOne = 1 << 3,
    FastZero = 1 << 4,
}

public enum ReplyType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    Error = 0x8001,
    ErrorOffset = 0x8002,
}

[Flags]
public enum ReplyFlags : ushort { None = 0, Done = 1 }

/// <summary>Error numbers on the wire; NBD fixes these values whatever the platform's errno.</summary>
public enum NbdError : uint
{
    None = 0,
    Perm = 1,
    Io = 5,
    NoMem = 12,
    Inval = 22,
    NoSpc = 28,
    Overflow = 75,
    NotSup = 95,
    Shutdown = 108,
}

/// <summary>
/// The metadata contexts served: allocation status from the backing, and qemu's dirty bitmaps (what
/// changed since an older point of the volume). Ids are ours to choose per SET_META_CONTEXT; fixed
/// ones keep replies easy to read in a packet dump.
/// </summary>
public static class MetaContexts
{
    public const string BaseAllocation = "base:allocation";
    public const uint BaseAllocationId = 1;

    /// <summary>qemu's namespace (docs/interop/nbd.rst): <c>qemu:dirty-bitmap:NAME</c>, one flag per extent.</summary>
    public const string DirtyBitmapPrefix = "qemu:dirty-bitmap:";
    /// <summary>The bitmaps a SET selects get this id and the ones after it, in the order they were asked for.</summary>
    public const uint FirstDirtyBitmapId = 2;
    /// <summary>NBD_STATE_DIRTY: the extent may differ from the bitmap's point; 0 means it is the same.</summary>
    public const uint StateDirty = 1;
    /// <summary>
    /// Bitmaps one connection may select: every BLOCK_STATUS reply (one chunk per context) must fit the
    /// request's inline buffer (a test holds this).
    /// </summary>
    public const int MaxDirtyBitmaps = 16;
}
