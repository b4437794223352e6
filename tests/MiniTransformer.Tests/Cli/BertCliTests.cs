using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tests.Models;

namespace MiniTransformer.Tests.Cli;

/// <summary>BERT through the mt command line: init, forward (token types, padding, grads), checkpoints, train, fill-mask.</summary>
[Collection("cli")]
public sealed class BertCliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-bert-cli-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    static (int Code, string Err, string Out) Run(params string[] args)
    {
        var err = new StringWriter();
        var @out = new StringWriter();
        var (savedErr, savedOut) = (Console.Error, Console.Out);
        Console.SetError(err);
        Console.SetOut(@out);
        try { return (MiniTransformer.Cli.Program.Main(args), err.ToString(), @out.ToString()); }
        finally { Console.SetError(savedErr); Console.SetOut(savedOut); }
    }

    string P(string name) => Path.Combine(dir, name);

    static SafeTensorFile Golden(string name) => SafeTensors.Read(Path.Combine(AppContext.BaseDirectory, "Golden", name));

    [Fact]
    public void InitWritesAHuggingFaceBertDirectory()
    {
        var (code, err, _) = Run("init", "--arch", "bert", "--layers", "2", "--heads", "2", "--dim", "8", "--vocab", "13", "--ctx", "10",
            "--ffn", "12", "--type-vocab", "3", "--pooler", "--out", P("bert"));
        Assert.True(code == 0, err);
        var cfg = BertConfig.FromJson(File.ReadAllText(P("bert/config.json")), "config.json");
        Assert.Equal((13, 10, 8, 2, 2, 12, 3, 1e-12, "gelu"), (cfg.VocabSize, cfg.MaxPositionEmbeddings, cfg.HiddenSize, cfg.NumHiddenLayers,
            cfg.NumAttentionHeads, cfg.IntermediateSize, cfg.TypeVocabSize, cfg.LayerNormEps, cfg.HiddenAct));
        var file = SafeTensors.Read(P("bert/model.safetensors"));
        var names = file.Tensors.Select(t => t.Name).ToHashSet();
        foreach (var n in new[] { "bert.embeddings.word_embeddings.weight", "bert.embeddings.token_type_embeddings.weight",
            "bert.encoder.layer.1.attention.self.query.weight", "bert.encoder.layer.1.attention.self.key.bias",
            "bert.encoder.layer.0.attention.output.LayerNorm.weight", "bert.encoder.layer.0.intermediate.dense.weight",
            "bert.pooler.dense.weight", "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias" })
            Assert.Contains(n, names);
        Assert.DoesNotContain(names, n => n.Contains("qkv", StringComparison.Ordinal));
        Assert.Equal([3L, 8], file["bert.embeddings.token_type_embeddings.weight"].Shape);
        Assert.Equal([12L, 8], file["bert.encoder.layer.0.intermediate.dense.weight"].Shape);   // Linear [out, in]
        var m = ModelFiles.Load(P("bert"), CpuBackend<float>.Instance);
        Assert.Equal("bert", m.Arch);
        Assert.True(((Bert<float>)m).Config.Pooler);

        Assert.Equal(2, Run("init", "--arch", "gpt2", "--type-vocab", "3", "--vocab", "13", "--out", P("x")).Code);
        var bad = Run("init", "--arch", "roberta", "--vocab", "13", "--out", P("x"));
        Assert.Equal(2, bad.Code);
        Assert.Contains("--arch", bad.Err);
    }

    [Fact]
    public void ForwardWithTokenTypesPaddingAndGradsMatchesPyTorch()
    {
        var golden = Golden("bert_mlm.safetensors");
        ModelFiles.Save(BertGoldenTests.LoadGolden<double>(golden), P("model"), StDType.F64);
        SafeTensors.Write(P("in.safetensors"), [golden["input_ids"], golden["token_type_ids"], golden["attention_mask"], golden["targets"]]);
        var (code, err, _) = Run("forward", "--model", P("model"), "--input", P("in.safetensors"), "--out", P("out.safetensors"),
            "--dtype", "f64", "--grads", "--activations");
        Assert.True(code == 0, err);
        var o = SafeTensors.Read(P("out.safetensors"));
        Numerics.AssertClose([("logits", o["logits"].ToDoubles(), golden["logits"].ToDoubles()),
            ("hidden_states", o["hidden_states"].ToDoubles(), golden["hidden_states"].ToDoubles())], 1e-10);
        Assert.Equal(golden["loss"].ToDoubles()[0], o["loss"].ToDoubles()[0], 1e-10);
        var grads = golden.Tensors.Where(t => t.Name.StartsWith("grad/", StringComparison.Ordinal)).Select(t => t.Name).ToList();
        Assert.Equal(5 + 2 * 16 + 5, grads.Count);
        Numerics.AssertClose([.. grads.Select(n => (n, o[n].ToDoubles(), golden[n].ToDoubles()))], 1e-10);
        Assert.Equal([3L, 3, 6, 6], o["act/layer.1.attn.pattern"].Shape);
        Assert.Equal([3L, 6, 27], o["act/layer.0.mlp.pre"].Shape);
    }

    [Fact]
    public void RealCheckpointExtrasAreSkippedAndUnknownTensorsNamed()
    {
        var golden = Golden("bert_pooler.safetensors");
        var cfg = golden.Metadata["config"];
        var tensors = golden.Tensors.Where(t => t.Name.StartsWith("bert.", StringComparison.Ordinal) || t.Name.StartsWith("cls.", StringComparison.Ordinal)).ToList();
        var emb = golden["bert.embeddings.word_embeddings.weight"];
        var extras = new List<StTensor>
        {
            StTensor.FromDoubles("bert.embeddings.position_ids", new double[9], [1, 9]),
            StTensor.FromDoubles("cls.seq_relationship.weight", new double[30], [2, 15]),
            StTensor.FromDoubles("cls.seq_relationship.bias", new double[2], [2]),
            new("cls.predictions.decoder.weight", emb.DType, emb.Shape, emb.Bytes),
        };
        Directory.CreateDirectory(P("real"));
        File.WriteAllText(P("real/config.json"), cfg);
        SafeTensors.Write(P("real/model.safetensors"), [.. tensors, .. extras]);
        var m = (Bert<double>)ModelFiles.Load(P("real"), CpuBackend<double>.Instance);
        Assert.True(m.Config.Pooler);
        Assert.Equal(golden["bert.encoder.layer.1.attention.self.value.bias"].ToDoubles(), m.Layers[1].Attn.Bqkv.Value.Data[30..45]);

        SafeTensors.Write(P("real/model.safetensors"), [.. tensors, StTensor.FromDoubles("bert.encoder.layer.0.attention.self.rotary", new double[2], [2])]);
        SafeTensors.Write(P("in.safetensors"), [golden["input_ids"]]);
        var (code, err, _) = Run("forward", "--model", P("real"), "--input", P("in.safetensors"), "--out", P("o.safetensors"));
        Assert.Equal(2, code);
        Assert.Contains("bert.encoder.layer.0.attention.self.rotary", err);
        Assert.False(File.Exists(P("o.safetensors")));

        SafeTensors.Write(P("real/model.safetensors"), tensors.Where(t => t.Name != "bert.encoder.layer.1.attention.self.key.weight"));
        (code, err, _) = Run("forward", "--model", P("real"), "--input", P("in.safetensors"), "--out", P("o.safetensors"));
        Assert.Equal(2, code);
        Assert.Contains("bert.encoder.layer.1.attention.self.key.weight", err);
    }

    [Fact]
    public void TrainResumeAndFillMask()
    {
        string[] common = ["train", "--arch", "bert", "--layers", "1", "--heads", "2", "--dim", "16", "--ctx", "16",
            "--data", "synthetic:induction", "--batch", "4", "--seq", "16", "--eval-every", "2", "--eval-batches", "1", "--out", P("run")];
        var (code, err, _) = Run([.. common, "--steps", "2"]);
        Assert.True(code == 0, err);
        var ck = P("run/checkpoint");
        Assert.Equal("bert", ModelFiles.ModelType(ck));
        var m = ModelFiles.LoadBert(ck, CpuBackend<float>.Instance);
        Assert.Equal(26 + 5, m.VocabSize);
        (code, err, _) = Run([.. common, "--steps", "4", "--resume"]);
        Assert.True(code == 0, err);
        Assert.Contains("Fill-mask", File.ReadAllText(P("run/report.md")));
        string outText;
        (code, err, outText) = Run("generate", "--model", ck, "--prompt", "abc>a[MASK]c|");
        Assert.True(code == 0, err);
        Assert.Equal(8, outText.Trim().Length);
        Assert.DoesNotContain("[MASK]", outText);
        (code, err, _) = Run("generate", "--model", ck, "--prompt", "abc>abc|");
        Assert.Equal(2, code);
        Assert.Contains("[MASK]", err);
    }
}
