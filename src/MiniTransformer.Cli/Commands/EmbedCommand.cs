using System.CommandLine;
using System.Numerics;
using MiniTransformer.IO;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt embed [--model DIR] TEXT...</c>: sentence embeddings (mean pooling over the attention mask, then L2
/// normalisation); prints each text's tokens and the cosine similarities, and with --out writes them as safetensors.
/// </summary>
static class EmbedCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = $"BERT model directory with vocab.txt (default: all-MiniLM-L6-v2 in {MiniLm.DefaultDir}, installed on first use)" };
        var texts = new Argument<string[]>("text") { Description = "sentences to embed", Arity = ArgumentArity.OneOrMore };
        var outFile = new Option<string?>("--out") { Description = "also write embeddings [N, d] (and nothing else) to this safetensors file" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "truncate each text to this many tokens with [CLS] and [SEP]", DefaultValueFactory = _ => MiniLm.MaxTokens };
        var dtype = Common.Dtype();
        var threads = Common.Threads();
        var cmd = new Command("embed", "Sentence embeddings: mean of the last hidden states over the attention mask, L2-normalised.");
        cmd.Arguments.Add(texts);
        foreach (Option o in new Option[] { model, outFile, maxTokens, dtype, threads }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            string dir = MiniLm.Resolve(r.GetValue(model), Console.Error.WriteLine);
            var args = (dir, r.GetValue(texts)!, r.GetValue(outFile), r.GetValue(maxTokens));
            if (Common.IsF64(r.GetValue(dtype)!)) Run(Common.Backend<double>("cpu"), args);
            else Run(Common.Backend<float>("cpu"), args);
            return 0;
        });
        return cmd;
    }

    static void Run<F>(Backends.IBackend<F> ops, (string Dir, string[] Texts, string? Out, int MaxTokens) a) where F : unmanaged, IFloatingPointIeee754<F>
    {
        if (a.MaxTokens < 2) throw new InputException($"--max-tokens: must be at least 2 (got {a.MaxTokens})");
        var emb = new SentenceEmbedder<F>(a.Dir, ops) { MaxTokens = a.MaxTokens };
        var ids = a.Texts.Select(emb.Tokenize).ToList();
        var e = emb.EmbedIds(ids);
        int d = e[0].Length;
        Console.WriteLine($"{emb.Model.Describe()} · {typeof(F).Name} · mean pooling + L2 norm · {a.Texts.Length} text(s), d={d}");
        for (int i = 0; i < a.Texts.Length; i++)
        {
            string toks = string.Join(" ", ids[i].Select(emb.Tokenizer.Token));
            if (toks.Length > 100) toks = toks[..97] + "...";
            Console.WriteLine($"[{i}] {ids[i].Length,3} tokens  {toks}");
            Console.WriteLine($"     [{string.Join(", ", e[i].Take(6).Select(v => Common.Fmt(v, "F5")))}, …]");
        }
        if (a.Texts.Length > 1)
        {
            Console.WriteLine("cosine similarity:");
            Console.WriteLine("      " + string.Concat(Enumerable.Range(0, a.Texts.Length).Select(j => $"{"[" + j + "]",8}")));
            for (int i = 0; i < a.Texts.Length; i++)
                Console.WriteLine($"{"[" + i + "]",5} " + string.Concat(Enumerable.Range(0, a.Texts.Length)
                    .Select(j => $"{Common.Fmt(SentenceEmbedder<F>.Cosine(e[i], e[j]), "F4"),8}")));
        }
        if (a.Out is not null)
        {
            var flat = e.SelectMany(x => x.Select(v => (float)v)).ToArray();
            SafeTensors.Write(a.Out, [StTensor.FromFloats("embeddings", flat, [e.Length, d])],
                new Dictionary<string, string> { ["model"] = a.Dir, ["pooling"] = "mean over attention mask, L2-normalised" });
            Console.WriteLine($"wrote {a.Out}: embeddings [{e.Length}, {d}]");
        }
    }
}
