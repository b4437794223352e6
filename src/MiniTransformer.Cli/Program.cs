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
            GaugeCommand.Create(),
            ImportCommand.Create(),
            PretrainedCommand.Create(),
            EmbedCommand.Create(),
            ExperimentSymmetryCommand.Create(),
            AnalyzeCommand.Create(),
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
            return Fail(2, e.Message);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("error: interrupted");
            return 130;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A file the user named cannot be read or written (missing folder, permissions, disk full): their input, not our bug.
            return Fail(2, e.Message);
        }
        catch (OutOfMemoryException)
        {
            return Fail(1, "out of memory; the up-front estimate did not catch this run (lower --batch, --seq or the model size)");
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"internal error: {e}");
            return 1;
        }
    }

    /// <summary>Exactly one line: "error: " and the message with any line breaks folded.</summary>
    static int Fail(int code, string message)
    {
        Console.Error.WriteLine("error: " + message.ReplaceLineEndings(" ").Trim());
        return code;
    }
}
