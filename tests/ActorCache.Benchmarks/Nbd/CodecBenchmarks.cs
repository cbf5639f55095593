using ActorCache.Nbd;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Nbd;

/// <summary>Parsing and checking a request header, and encoding the replies the front sends most.</summary>
[MemoryDiagnoser]
public class CodecBenchmarks
{
    private readonly byte[] _request = new byte[NbdProtocol.RequestHeaderSize];
    private readonly byte[] _reply = new byte[64];
    private readonly NbdSession _session = new(1L << 30, false, true, true);

    [GlobalSetup]
    public void Setup() => new NbdRequestHeader(CommandFlags.Fua, NbdCommand.Write, 99, 1 << 20, 4096).Write(_request);

    [Benchmark]
    public NbdError ParseAndCheck()
    {
        NbdRequestHeader.TryParse(_request, out var header);
        return NbdRequestRules.Check(header, _session);
    }

    [Benchmark]
    public int EncodeSimpleAndDataReplies() =>
        NbdReplyEncoder.WriteSimple(_reply, NbdError.None, 99) + NbdReplyEncoder.WriteOffsetDataHeader(_reply, 99, 1 << 20, 4096, done: true);
}
