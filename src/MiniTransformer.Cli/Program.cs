using System.CommandLine;
using MiniTransformer.Cli.Commands;

namespace MiniTransformer.Cli;

/// <summary>
/// <c>mt</c>, the MiniTransformer command line. Exit codes: 0 success; 2 bad input (one <c>error:</c> line on
/// stderr naming what and where, no stack trace, no partial output file); 1 an internal failure.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("MiniTransformer: GPT-2 (and BERT) forward/backward over hand-written kernels, for gauge studies.")
        {
            DemoCommand.Create(),
            InitCommand.Create(),
            TrainCommand.Create(),
            ForwardCommand.Create(),
            GenerateCommand.Create(),
            BenchCommand.Create(),
            KernelsCommand.Create(),
        };
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            Console.Error.WriteLine($"error: {parse.Errors[0].Message} (see 'mt {string.Join(' ', parse.CommandResult.Command.Name == root.Name ? "" : parse.CommandResult.Command.Name)} --help')".Replace("mt  --help", "mt --help"));
            return 2;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (InputException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("error: interrupted");
            return 130;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"internal error: {e}");
            return 1;
        }
    }
}
