using BenchmarkDotNet.Running;

namespace MiniTransformer.Bench;

public static class Program
{
    /// <summary>
    /// BenchmarkDotNet entry point, e.g. <c>dotnet run -c Release -- --filter '*Gemm*' --job short</c>.
    /// <c>quick-gemm [threads...] [shape-prefix...]</c> runs a plain GFLOP/s timing loop instead (no BenchmarkDotNet),
    /// e.g. <c>quick-gemm 1 2 sq</c>.
    /// </summary>
    public static void Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "quick-gemm")
        {
            var rest = args.Skip(1).ToArray();
            GemmQuick.Run(rest.Where(a => a.All(char.IsDigit)).Select(int.Parse).ToArray(),
                          rest.Where(a => !a.All(char.IsDigit)).ToArray());
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
