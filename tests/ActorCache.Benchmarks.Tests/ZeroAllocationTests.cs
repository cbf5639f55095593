using System.Reflection;
using BenchmarkDotNet.Attributes;

namespace ActorCache.Benchmarks.Tests;

/// <summary>
/// Every BenchmarkDotNet benchmark of a hot path must allocate nothing per operation. This runs each
/// one in-process (setup, warm-up, then many invocations per parameter value) and fails with the
/// benchmark's name if the process allocated anything while it ran.
/// </summary>
public sealed class ZeroAllocationTests
{
    public static TheoryData<string> Benchmarks()
    {
        var data = new TheoryData<string>();
        foreach (var type in BenchmarkTypes())
        foreach (var method in type.GetMethods().Where(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null))
            data.Add($"{type.FullName}.{method.Name}");
        return data;
    }

    private static IEnumerable<Type> BenchmarkTypes() =>
        typeof(Program).Assembly.GetTypes().Where(t => t.GetMethods().Any(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null));

    [Theory]
    [MemberData(nameof(Benchmarks))]
    public void Allocates_nothing_per_operation(string benchmark)
    {
        var split = benchmark.LastIndexOf('.');
        var type = typeof(Program).Assembly.GetType(benchmark[..split])!;
        var method = type.GetMethod(benchmark[(split + 1)..])!;
        var parameters = type.GetProperties().Where(p => p.GetCustomAttribute<ParamsAttribute>() is not null).ToList();
        var values = parameters.Count == 0 ? [null] : parameters[0].GetCustomAttribute<ParamsAttribute>()!.Values;
        foreach (var value in values)
        {
            var instance = Activator.CreateInstance(type)!;
            if (value is not null) parameters[0].SetValue(instance, value);
            Invoke<GlobalSetupAttribute>(type, instance);
            try
            {
                // Delegates bound once, so the measured loop is the benchmark alone (reflection's Invoke boxes).
                var run = method.ReturnType == typeof(void)
                    ? method.CreateDelegate<Action>(instance)
                    : Adapt(method, instance);
                for (var i = 0; i < 200; i++) run(); // warm-up: JIT tiers, first-use buffers
                // Up to three measured rounds: the runtime may allocate once on this thread while a method moves to its
                // next JIT tier in the middle of one; an allocation per operation shows in every round.
                const int operations = 2000;
                var perOperation = double.MaxValue;
                for (var round = 0; round < 3 && perOperation >= 1; round++)
                {
                    var before = GC.GetAllocatedBytesForCurrentThread();
                    for (var i = 0; i < operations; i++) run();
                    perOperation = Math.Min(perOperation, (double)(GC.GetAllocatedBytesForCurrentThread() - before) / operations);
                }
                Assert.True(perOperation < 1, $"{benchmark}({value}) allocates {perOperation:F1} bytes per operation");
            }
            finally
            {
                Invoke<GlobalCleanupAttribute>(type, instance);
            }
        }
    }

    private static void Invoke<TAttribute>(Type type, object instance) where TAttribute : Attribute
    {
        foreach (var m in type.GetMethods().Where(m => m.GetCustomAttribute<TAttribute>() is not null)) m.Invoke(instance, null);
    }

    /// <summary>A benchmark that returns a value, called through a typed delegate so the result is not boxed.</summary>
    private static Action Adapt(MethodInfo method, object instance)
    {
        var adapt = typeof(ZeroAllocationTests).GetMethod(nameof(AdaptTyped), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(method.ReturnType);
        return (Action)adapt.Invoke(null, [method, instance])!;
    }

    private static Action AdaptTyped<T>(MethodInfo method, object instance)
    {
        var call = method.CreateDelegate<Func<T>>(instance);
        return () => call();
    }
}
