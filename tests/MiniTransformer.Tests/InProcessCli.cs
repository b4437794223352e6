namespace MiniTransformer.Tests;

/// <summary>Runs <c>mt</c> in-process with stdout and stderr captured (tests that use it share the "cli" collection).</summary>
public static class InProcessCli
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var err = new StringWriter();
        var output = new StringWriter();
        var (savedErr, savedOut) = (Console.Error, Console.Out);
        Console.SetError(err);
        Console.SetOut(output);
        try { return (MiniTransformer.Cli.Program.Main(args), output.ToString(), err.ToString()); }
        finally { Console.SetError(savedErr); Console.SetOut(savedOut); }
    }
}
