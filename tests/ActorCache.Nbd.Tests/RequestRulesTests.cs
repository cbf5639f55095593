namespace ActorCache.Nbd.Tests;

public class RequestRulesTests
{
    private const long Size = 1 << 20;
    private static readonly NbdSession Plain = new(Size, ReadOnly: false, StructuredReplies: true, MetaContextSelected: true);

    private static NbdError Check(NbdCommand command, ulong offset, uint length, CommandFlags flags = CommandFlags.None, NbdSession? session = null) =>
        NbdRequestRules.Check(new NbdRequestHeader(flags, command, 1, offset, length), session ?? Plain);

    [Theory]
    [InlineData(NbdCommand.Read)]
    [InlineData(NbdCommand.Write)]
    [InlineData(NbdCommand.Trim)]
    [InlineData(NbdCommand.WriteZeroes)]
    [InlineData(NbdCommand.Cache)]
    [InlineData(NbdCommand.BlockStatus)]
    public void Valid_requests_pass(NbdCommand command) => Assert.Equal(NbdError.None, Check(command, 4096, 4096));

    [Fact]
    public void Flush_takes_no_range() => Assert.Equal(NbdError.Inval, Check(NbdCommand.Flush, 0, 512));

    [Theory]
    [InlineData(NbdCommand.Read, NbdError.Inval)]
    [InlineData(NbdCommand.Trim, NbdError.Inval)]
    [InlineData(NbdCommand.Cache, NbdError.Inval)]
    [InlineData(NbdCommand.BlockStatus, NbdError.Inval)]
    [InlineData(NbdCommand.Write, NbdError.NoSpc)]
    [InlineData(NbdCommand.WriteZeroes, NbdError.NoSpc)]
    public void Past_the_end_is_einval_except_writes_which_get_enospc(NbdCommand command, NbdError expected)
    {
        Assert.Equal(expected, Check(command, Size - 512, 1024));
        Assert.Equal(expected, Check(command, Size, 512));
        Assert.Equal(expected, Check(command, ulong.MaxValue - 511, 512)); // no wrap-around
    }

    [Theory]
    [InlineData(1ul, 512u)]
    [InlineData(512ul, 100u)]
    [InlineData(4097ul, 4096u)]
    public void Misaligned_to_512_is_einval(ulong offset, uint length)
    {
        Assert.Equal(NbdError.Inval, Check(NbdCommand.Read, offset, length));
        Assert.Equal(NbdError.Inval, Check(NbdCommand.Write, offset, length));
    }

    [Fact]
    public void Zero_length_is_einval() => Assert.Equal(NbdError.Inval, Check(NbdCommand.Read, 0, 0));

    [Fact]
    public void Unknown_command_is_einval() => Assert.Equal(NbdError.Inval, Check((NbdCommand)42, 0, 512));

    [Theory]
    [InlineData(NbdCommand.Read, CommandFlags.ReqOne)]
    [InlineData(NbdCommand.Write, CommandFlags.NoHole)]
    [InlineData(NbdCommand.Flush, CommandFlags.ReqOne)]
    [InlineData(NbdCommand.BlockStatus, CommandFlags.NoHole)]
    [InlineData(NbdCommand.Write, (CommandFlags)0x8000)]
    public void Unknown_or_misplaced_flags_are_einval(NbdCommand command, CommandFlags flags) =>
        Assert.Equal(NbdError.Inval, Check(command, 0, command == NbdCommand.Flush ? 0u : 512u, flags));

    [Theory]
    [InlineData(NbdCommand.Read)]
    [InlineData(NbdCommand.Write)]
    [InlineData(NbdCommand.Flush)]
    [InlineData(NbdCommand.Trim)]
    [InlineData(NbdCommand.Cache)]
    [InlineData(NbdCommand.WriteZeroes)]
    [InlineData(NbdCommand.BlockStatus)]
    public void Fua_is_accepted_on_every_command(NbdCommand command) =>
        // proto.md: valid for all commands, the server MUST accept it (even by ignoring it); older qemu sets it on FLUSH.
        Assert.Equal(NbdError.None, Check(command, 0, command == NbdCommand.Flush ? 0u : 4096u, CommandFlags.Fua));

    [Fact]
    public void Df_needs_structured_replies()
    {
        Assert.Equal(NbdError.None, Check(NbdCommand.Read, 0, 512, CommandFlags.DontFragment));
        Assert.Equal(NbdError.Inval, Check(NbdCommand.Read, 0, 512, CommandFlags.DontFragment, Plain with { StructuredReplies = false }));
    }

    [Fact]
    public void Block_status_needs_a_negotiated_context() =>
        Assert.Equal(NbdError.Inval, Check(NbdCommand.BlockStatus, 0, 512, session: Plain with { MetaContextSelected = false }));

    [Theory]
    [InlineData(NbdCommand.Write)]
    [InlineData(NbdCommand.Trim)]
    [InlineData(NbdCommand.WriteZeroes)]
    public void Writes_to_a_read_only_export_are_eperm(NbdCommand command) =>
        Assert.Equal(NbdError.Perm, Check(command, 0, 512, session: Plain with { ReadOnly = true }));

    [Fact]
    public void Payloads_over_32_MiB_are_refused()
    {
        var big = new NbdSession(1L << 40, false, true, true);
        Assert.Equal(NbdError.Inval, Check(NbdCommand.Read, 0, (32u << 20) + 512, session: big));
        Assert.Equal(NbdError.Inval, Check(NbdCommand.Write, 0, (32u << 20) + 512, session: big));
        Assert.Equal(NbdError.None, Check(NbdCommand.Read, 0, 32u << 20, session: big));
        Assert.Equal(NbdError.None, Check(NbdCommand.Trim, 0, 64u << 20, session: big)); // no payload, no cap
    }
}
