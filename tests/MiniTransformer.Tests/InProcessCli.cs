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

    /// <summary>Bad input: exit code 2 and exactly one stderr line, starting "error:" and containing each of <paramref name="mentions"/>.</summary>
    public static void AssertInputError((int Code, string Out, string Err) r, params string[] mentions)
    {
        Assert.Equal(2, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var m in mentions) Assert.Contains(m, lines[0]);
    }
}
