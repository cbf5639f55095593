namespace ActorCache.Nbd;

/// <summary>
/// What a connection negotiated and what its export allows: everything a request is checked against.
/// <c>MetaContextSelected</c>: at least one metadata context (base:allocation, a dirty bitmap), so BLOCK_STATUS has an answer.
/// </summary>
public readonly record struct NbdSession(long ExportSize, bool ReadOnly, bool StructuredReplies, bool MetaContextSelected);

/// <summary>
/// The checks every request passes before it reaches the volume, in the order the spec implies:
/// command, flags, permission, size, range, alignment. Pure, so each error path is unit-tested.
/// </summary>
public static class NbdRequestRules
{
    public static NbdError Check(in NbdRequestHeader request, in NbdSession session)
    {
        var allowed = request.Command switch
        {
            NbdCommand.Read => CommandFlags.Fua | (session.StructuredReplies ? CommandFlags.DontFragment : 0),
            NbdCommand.Write => CommandFlags.Fua,
            NbdCommand.Trim => CommandFlags.Fua,
            NbdCommand.WriteZeroes => CommandFlags.Fua | CommandFlags.NoHole | CommandFlags.FastZero,
            // FUA is valid on every command (proto.md: a server MUST accept it, even by ignoring it; older qemu sets it on FLUSH).
            NbdCommand.BlockStatus => CommandFlags.Fua | CommandFlags.ReqOne,
            NbdCommand.Flush or NbdCommand.Disconnect or NbdCommand.Cache => CommandFlags.Fua,
            _ => (CommandFlags)0xFFFF, // unknown command: rejected below
        };
        if (allowed == (CommandFlags)0xFFFF || (request.Flags & ~allowed) != 0) return NbdError.Inval;

        var writes = request.Command is NbdCommand.Write or NbdCommand.Trim or NbdCommand.WriteZeroes;
        if (writes && session.ReadOnly) return NbdError.Perm;

        switch (request.Command)
        {
            case NbdCommand.Flush:
            case NbdCommand.Disconnect:
                return request.Offset == 0 && request.Length == 0 ? NbdError.None : NbdError.Inval;
            case NbdCommand.BlockStatus when !session.MetaContextSelected:
                return NbdError.Inval; // no metadata context was negotiated
        }

        if (request.Length == 0) return NbdError.Inval;
        if (request.Length > NbdProtocol.MaxPayload && request.Command is NbdCommand.Read or NbdCommand.Write)
            return NbdError.Inval;
        var size = (ulong)session.ExportSize;
        if (request.Offset > size || request.Length > size - request.Offset)
            return request.Command is NbdCommand.Write or NbdCommand.WriteZeroes ? NbdError.NoSpc : NbdError.Inval;
        const ulong mask = NbdProtocol.MinBlockSize - 1;
        if ((request.Offset & mask) != 0 || (request.Length & mask) != 0) return NbdError.Inval;
        return NbdError.None;
    }
}
