using System.CommandLine;
using System.Text.Json.Nodes;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Cli.Commands;

static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model directory", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "text to continue", Required = true };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "sampling temperature (0: greedy)", DefaultValueFactory = _ => 0.8 };
        var topK = new Option<int>("--top-k") { Description = "sample among the k most likely tokens (0: all)", DefaultValueFactory = _ => 40 };
        var seed = new Option<int>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 1337 };
        var data = new Option<string?>("--data") { Description = "data spec whose tokenizer to use (default: the model's data.json, else GPT-2's)" };
        var threads = Common.Threads();
        var device = Common.Device();
        var vocabTxt = new Option<string?>("--vocab-txt") { Description = "bert: the WordPiece vocab.txt the model was trained with" };
        var cmd = new Command("generate", "Continue a prompt with a GPT-2; with a BERT, fill each [MASK] in the prompt.");
        foreach (Option o in new Option[] { model, prompt, maxNew, temperature, topK, seed, data, threads, device, vocabTxt }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            string dir = r.GetValue(model)!;
            if (r.GetValue(maxNew) < 0) throw new InputException("--max-new-tokens: must be non-negative");
            var ops = Common.Backend<float>(r.GetValue(device)!);
            if (ModelFiles.ModelType(dir) == "bert")
            {
                Console.WriteLine(FillMask(ModelFiles.LoadBert(dir, ops), dir, r.GetValue(data), r.GetValue(vocabTxt), r.GetValue(prompt)!));
                return 0;
            }
            var m = ModelFiles.LoadGpt2(dir, ops);
            var tokenizer = Tokenizer(dir, r.GetValue(data), m.VocabSize);
            var ids = tokenizer.Encode(r.GetValue(prompt)!);
            var output = Sampling.Generate(m, ids, r.GetValue(maxNew), r.GetValue(temperature), r.GetValue(topK), r.GetValue(seed),
                t => t == tokenizer.EndOfText);
            Console.WriteLine(r.GetValue(prompt) + tokenizer.Decode(output));
            return 0;
        });
        return cmd;
    }

    /// <summary>BERT: the prompt with every [MASK] replaced by the model's most likely token ([CLS] … [SEP] around it).</summary>
    static string FillMask(Bert<float> m, string dir, string? spec, string? vocabTxt, string prompt)
    {
        IBertTokenizer tokenizer;
        if (vocabTxt is not null) tokenizer = new BertWordPiece(vocabTxt);
        else
        {
            (spec, int seed) = DataInfo(dir, spec);
            if (spec is null) throw new InputException($"{dir}: no data.json says which tokenizer this BERT uses; pass --data SPEC or --vocab-txt FILE");
            tokenizer = MlmSources.Create(spec, seed).Tokenizer;
        }
        if (tokenizer.VocabSize > m.VocabSize)
            throw new InputException($"the tokenizer has {tokenizer.VocabSize} tokens, the model only {m.VocabSize}");
        int[] ids = [tokenizer.Special.Cls, .. tokenizer.Encode(prompt), tokenizer.Special.Sep];
        if (!ids.Contains(tokenizer.Special.Mask)) throw new InputException("--prompt: a BERT fills [MASK] tokens; the prompt has none");
        if (ids.Length > m.MaxSequence) throw new InputException($"--prompt: {ids.Length} tokens exceed the model's {m.MaxSequence}");
        m.Forward(ids, null, 1, ids.Length);
        int V = m.VocabSize;
        var filled = ids.ToArray();
        for (int t = 0; t < ids.Length; t++)
            if (ids[t] == tokenizer.Special.Mask)
                filled[t] = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(m.Logits.Data.AsSpan(t * V, V));
        return tokenizer.Decode(filled.AsSpan(1, filled.Length - 2));
    }

    static (string? Spec, int Seed) DataInfo(string modelDir, string? spec)
    {
        int seed = 1337;
        string info = Path.Combine(modelDir, Trainer<float>.DataFile);
        if (spec is null && File.Exists(info) && JsonNode.Parse(File.ReadAllText(info)) is JsonObject o)
        {
            spec = (string?)o["data"];
            seed = (int?)o["seed"] ?? seed;
        }
        return (spec, seed);
    }

    static ITokenizer Tokenizer(string modelDir, string? spec, int vocab)
    {
        (spec, int seed) = DataInfo(modelDir, spec);
        if (spec is not null)
        {
            var t = DataSources.Create(spec, seed).Tokenizer;
            if (t.VocabSize > vocab) throw new InputException($"--data: tokenizer of {spec} has {t.VocabSize} tokens, the model only {vocab}");
            return t;
        }
        if (vocab >= Gpt2Tokenizer.Instance.VocabSize) return Gpt2Tokenizer.Instance;
        throw new InputException($"{modelDir}: no data.json says which tokenizer this model uses; pass --data SPEC");
    }
}
