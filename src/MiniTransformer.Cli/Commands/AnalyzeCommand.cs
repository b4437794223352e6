using System.CommandLine;
using System.Globalization;
using MiniTransformer.Analysis;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Cli.Commands;

/// <summary><c>mt analyze bq</c>: which tokens' keys align with the mean query bias, per layer and head (arXiv 2601.22257).</summary>
static class AnalyzeCommand
{
    public static Command Create()
    {
        var cmd = new Command("analyze", "Analyses of trained models.");
        var model = new Option<string>("--model") { Description = "model directory (trained with --symmetry-breaking bq)", Required = true };
        var data = new Option<string>("--data") { Description = "data spec: its tokenizer names the tokens, and only tokens it uses are ranked", Required = true };
        var top = new Option<int>("--top") { Description = "tokens listed per head and direction", DefaultValueFactory = _ => 8 };
        var bq = new Command("bq", "Per layer and head: cosine between each token's key x·W_K and the mean b_Q; the most aligned and anti-aligned tokens.");
        foreach (Option o in new Option[] { model, data, top }) bq.Options.Add(o);
        bq.SetAction(r =>
        {
            var m = ModelFiles.Load(r.GetValue(model)!, CpuBackend<double>.Instance);
            var src = DataSources.Create(r.GetValue(data)!, 1);
            if (src.VocabSize > m.VocabSize) throw new InputException($"--data: {src.Spec} needs {src.VocabSize} tokens, the model has {m.VocabSize}");
            var tokens = Enumerable.Range(0, src.VocabSize).ToArray();
            string Tok(int id) { try { return "'" + src.Tokenizer.Decode([id]).Replace("\n", "⏎") + "'"; } catch (Exception) { return $"#{id}"; } }
            var (sb, heads) = m switch
            {
                Gpt2<double> g => (g.Config.SymmetryBreaking, BqAlignment.Analyze(g, tokens, r.GetValue(top))),
                Bert<double> b => (b.Config.SymmetryBreaking, BqAlignment.Analyze(b, tokens, r.GetValue(top))),
                _ => throw new InputException("--model: mt analyze bq needs a GPT-2 or BERT"),
            };
            Console.WriteLine($"b_Q mean: [{string.Join(", ", sb!.BqMean.Select(x => x.ToString("G3", CultureInfo.InvariantCulture)))}]");
            foreach (var h in heads)
            {
                Console.WriteLine($"layer {h.Layer} head {h.Head}  (mean cosine {h.MeanCosine:+0.000;-0.000})");
                Console.WriteLine("  aligned:      " + string.Join("  ", h.Top.Select(t => $"{Tok(t.Token)} {t.Cosine:+0.000;-0.000}")));
                Console.WriteLine("  anti-aligned: " + string.Join("  ", h.Bottom.Select(t => $"{Tok(t.Token)} {t.Cosine:+0.000;-0.000}")));
            }
            return 0;
        });
        cmd.Subcommands.Add(bq);
        cmd.Subcommands.Add(AnalyzeTrajectoryCommand.Create());
        return cmd;
    }
}
