using System.CommandLine;
using MiniTransformer.IO;

namespace MiniTransformer.Cli.Commands;

/// <summary><c>mt import onnx --onnx FILE --vocab FILE --out DIR</c>: a Hugging Face BERT exported to ONNX → model directory.</summary>
static class ImportCommand
{
    public static Command Create()
    {
        var onnx = new Option<string>("--onnx") { Description = "ONNX file of a Hugging Face BERT export (BertModel or BertForMaskedLM)", Required = true };
        var vocab = new Option<string>("--vocab") { Description = "its vocab.txt (one WordPiece token per line)", Required = true };
        var outDir = new Option<string>("--out") { Description = "model directory to write (config.json, model.safetensors, vocab.txt, import.json)", Required = true };
        var sub = new Command("onnx", "Convert a BERT ONNX export into the engine's Hugging Face layout (weights named from the graph, [in,out] → [out,in]).");
        foreach (Option o in new Option[] { onnx, vocab, outDir }) sub.Options.Add(o);
        sub.SetAction(r =>
        {
            string dir = r.GetValue(outDir)!;
            var cfg = OnnxBertImport.Import(r.GetValue(onnx)!, r.GetValue(vocab)!, dir);
            Console.WriteLine($"wrote {dir}: BERT L={cfg.NumHiddenLayers} H={cfg.NumAttentionHeads} d={cfg.HiddenSize} MLP={cfg.IntermediateSize} " +
                $"V={cfg.VocabSize} ctx={cfg.MaxPositionEmbeddings}{(cfg.Pooler ? " +pooler" : "")}{(cfg.MlmHead ? " +MLM head" : " encoder-only")}, " +
                $"{Common.HumanCount(cfg.ParameterCount)} parameters");
            return 0;
        });
        var cmd = new Command("import", "Import a model from another format.");
        cmd.Subcommands.Add(sub);
        return cmd;
    }
}
