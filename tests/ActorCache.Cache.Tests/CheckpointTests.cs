namespace ActorCache.Cache.Tests;

/// <summary>The checkpoint is updated in place in two slots: a full file system does not stop it, and a torn save leaves the previous one.</summary>
public sealed class CheckpointTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("actorcache-checkpoint-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Saves_alternate_slots_and_a_torn_slot_falls_back_to_the_previous_checkpoint()
    {
        var first = Checkpoint.New() with { Horizon = 4096, Sequence = 2, Generation = 3, StoreLength = 8192, RestorableFrom = 5 };
        first.Save(_directory);
        Assert.Equal(first, Checkpoint.Load(_directory));
        var second = first with { Horizon = 65536, Sequence = 9 };
        second.Save(_directory);
        Assert.Equal(second, Checkpoint.Load(_directory));
        var path = Path.Combine(_directory, Checkpoint.FileName);
        Assert.Equal(8192, new FileInfo(path).Length);

        // Tear the slot the second save wrote (slot 0: saves 1, 2, 3 go to slots 1, 0, 1).
        var bytes = File.ReadAllBytes(path);
        bytes[30] ^= 0xFF;
        File.WriteAllBytes(path, bytes);
        Assert.Equal(first, Checkpoint.Load(_directory));
        var third = second with { Horizon = 1 << 20, Sequence = 20 };
        third.Save(_directory);
        Assert.Equal(third, Checkpoint.Load(_directory));
    }

    [Fact]
    public void A_version_2_checkpoint_is_read_and_the_next_save_turns_it_into_version_3()
    {
        var id = Guid.NewGuid();
        var v2 = new byte[60];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(v2, 0x323054504B434341);
        id.TryWriteBytes(v2.AsSpan(8, 16));
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(v2.AsSpan(24), 12288);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(v2.AsSpan(32), 4);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(v2.AsSpan(40), 2);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(v2.AsSpan(48), 4096);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(v2.AsSpan(56), ActorCache.Blocks.Crc32C.Compute(v2.AsSpan(0, 56)));
        File.WriteAllBytes(Path.Combine(_directory, Checkpoint.FileName), v2);
        var loaded = Checkpoint.Load(_directory);
        Assert.Equal(new Checkpoint(id, 12288, 4, 2, 4096), loaded);
        loaded!.Save(_directory);
        Assert.Equal(8192, new FileInfo(Path.Combine(_directory, Checkpoint.FileName)).Length);
        Assert.Equal(loaded, Checkpoint.Load(_directory));
    }

    [Fact]
    public void A_version_3_file_is_read_and_the_next_save_rewrites_it_whole_as_version_4()
    {
        // Version 3 slots: the same fields up to the save counter, the CRC at 64, no restorable-from (it is the horizon's).
        var id = Guid.NewGuid();
        var file = new byte[8192];
        void Slot(int at, long sequence, long counter)
        {
            var slot = file.AsSpan(at, 68);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(slot, 0x333054504B434341);
            id.TryWriteBytes(slot[8..24]);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(slot[24..], sequence * 4096);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(slot[32..], sequence);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(slot[40..], 2);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(slot[48..], 0);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(slot[56..], counter);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(slot[64..], ActorCache.Blocks.Crc32C.Compute(slot[..64]));
        }
        Slot(0, sequence: 4, counter: 2);
        Slot(4096, sequence: 3, counter: 1);
        File.WriteAllBytes(Path.Combine(_directory, Checkpoint.FileName), file);
        var loaded = Checkpoint.Load(_directory)!;
        Assert.Equal(new Checkpoint(id, 4 * 4096, 4, 2), loaded);
        Assert.Equal(4, loaded.FirstRestorable);

        // The next save rewrites the file: no version 3 slot is left for a version 3 node to take for the checkpoint.
        var next = loaded with { RestorableFrom = 9 };
        next.Save(_directory);
        Assert.Equal(next, Checkpoint.Load(_directory));
        Assert.Equal(9, Checkpoint.Load(_directory)!.FirstRestorable);
        var saved = File.ReadAllBytes(Path.Combine(_directory, Checkpoint.FileName));
        Assert.Equal(8192, saved.Length);
        Assert.DoesNotContain(0x333054504B434341ul, new[] { 0, 4096 }.Select(at => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(saved.AsSpan(at))));
    }
}
