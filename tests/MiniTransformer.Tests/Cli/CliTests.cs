using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Tests.Models;

namespace MiniTransformer.Tests.Cli;

[CollectionDefinition("cli", DisableParallelization = true)]
public class CliCollection;

/// <summary>The mt command line, run in-process: contract flags, outputs, exit codes and error lines.</summary>
[Collection("cli")]
public sealed class CliTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("mt-cli-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    static (int Code, string Err) Run(params string[] args)
    {
        var err = new StringWriter();
        var saved = Console.Error;
        Console.SetError(err);
        try { return (MiniTransformer.Cli.Program.Main(args), err.ToString()); }
        finally { Console.SetError(saved); }
    }

    string P(string name) => Path.Combine(dir, name);

    /// <summary>The golden PyTorch model saved as a Hugging Face directory, and its batch as an input file.</summary>
    (SafeTensorFile Golden, string ModelDir, string Input) GoldenSetup()
    {
        var golden = SafeTensors.Read(Path.Combine(AppContext.BaseDirectory, "Golden", "gpt2_tied.safetensors"));
        var model = Gpt2GoldenTests.LoadGolden<double>(golden);
        ModelFiles.Save(model, P("model"), StDType.F64);
        SafeTensors.Write(P("in.safetensors"), [golden["input_ids"], golden["targets"]]);
        return (golden, P("model"), P("in.safetensors"));
    }

    [Fact]
    public void ForwardWithGradsMatchesPyTorchThroughTheModelDirectory()
    {
        var (golden, model, input) = GoldenSetup();
        var (code, err) = Run("forward", "--model", model, "--input", input, "--out", P("out.safetensors"), "--dtype", "f64", "--grads", "--activations");
        Assert.True(code == 0, err);
        var outFile = SafeTensors.Read(P("out.safetensors"));
        var group = new List<(string, double[], double[])>
        {
            ("logits", outFile["logits"].ToDoubles(), golden["logits"].ToDoubles()),
            ("hidden_states", outFile["hidden_states"].ToDoubles(), golden["hidden_states"].ToDoubles()),
        };
        Numerics.AssertClose(group, 1e-10);
        Assert.Equal(golden["loss"].ToDoubles()[0], outFile["loss"].ToDoubles()[0], 1e-10);
        var names = golden.Tensors.Select(t => t.Name).Where(n => n.StartsWith("grad/", StringComparison.Ordinal)).ToList();
        Assert.Equal(12 * 2 + 4, names.Count);   // 12 per layer + wte, wpe, ln_f.{weight,bias}
        Numerics.AssertClose([.. names.Select(n => (n, outFile[n].ToDoubles(), golden[n].ToDoubles()))], 1e-10);
        // Activations are shaped for analysis: attention pattern rows sum to one.
        var pattern = outFile["act/h.1.attn.pattern"];
        Assert.Equal([2L, 3, 7, 7], pattern.Shape);
        var p = pattern.ToDoubles();
        for (int row = 0; row < p.Length / 7; row++)
            Assert.Equal(1.0, p.Skip(row * 7).Take(7).Sum(), 1e-12);
        Assert.Equal(outFile["hidden_states"].ToDoubles(), outFile["act/ln_f"].ToDoubles());
    }

    [Fact]
    public void InitThenForwardInFloat32()
    {
        var (code, err) = Run("init", "--arch", "gpt2", "--layers", "1", "--heads", "2", "--dim", "8", "--vocab", "11", "--ctx", "5", "--ffn", "12", "--untied", "--out", P("m"));
        Assert.True(code == 0, err);
        var cfg = Gpt2Config.FromJson(File.ReadAllText(P("m/config.json")), "config.json");
        Assert.Equal(new Gpt2Config(11, 5, 8, 1, 2, 1e-5, 12, false), cfg);
        SafeTensors.Write(P("in.safetensors"), [StTensor.FromInt64s("input_ids", [1, 2, 3, 4, 5, 6], 2, 3)]);
        (code, err) = Run("forward", "--model", P("m"), "--input", P("in.safetensors"), "--out", P("o.safetensors"));
        Assert.True(code == 0, err);
        var o = SafeTensors.Read(P("o.safetensors"));
        Assert.Equal(StDType.F32, o["logits"].DType);
        Assert.Equal([2L, 3, 11], o["logits"].Shape);
        Assert.False(o.TryGet("loss", out _));
    }

    [Theory]
    [InlineData("train", "--bogus-flag")]
    [InlineData("forward", "--model")]
    [InlineData("frobnicate")]
    public void BadCommandLinesExitTwoWithOneErrorLine(params string[] args)
    {
        var (code, err) = Run(args);
        Assert.Equal(2, code);
        Assert.StartsWith("error:", err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [Fact]
    public void BadInputsNameTheProblemAndWriteNothing()
    {
        var (_, model, input) = GoldenSetup();
        void Expect(string contains, params string[] args)
        {
            var (code, err) = Run(args);
            Assert.Equal(2, code);
            Assert.StartsWith("error:", err);
            Assert.Contains(contains, err);
            Assert.DoesNotContain("   at ", err);   // no stack trace
            Assert.False(File.Exists(P("out.safetensors")));
        }
        Expect("no such model", "forward", "--model", P("missing"), "--input", input, "--out", P("out.safetensors"));
        SafeTensors.Write(P("bad.safetensors"), [StTensor.FromInt64s("input_ids", [1, 99], 1, 2)]);
        Expect("input_ids[0, 1] = 99", "forward", "--model", model, "--input", P("bad.safetensors"), "--out", P("out.safetensors"));
        SafeTensors.Write(P("tt.safetensors"), [StTensor.FromInt64s("input_ids", [1, 2], 1, 2), StTensor.FromInt64s("token_type_ids", [0, 0], 1, 2)]);
        Expect("token_type_ids", "forward", "--model", model, "--input", P("tt.safetensors"), "--out", P("out.safetensors"));
        Expect("--dtype", "forward", "--model", model, "--input", input, "--out", P("out.safetensors"), "--dtype", "f16");
        Expect("--device cuda", "forward", "--model", model, "--input", input, "--out", P("out.safetensors"), "--device", "cuda");
        File.WriteAllText(P("corrupt.safetensors"), "not a safetensors file at all");
        Expect("corrupt.safetensors", "forward", "--model", model, "--input", P("corrupt.safetensors"), "--out", P("out.safetensors"));
        Expect("unknown data spec", "train", "--data", "nonsense:x", "--steps", "1", "--out", P("run"));
    }

    [Fact]
    public void ModelDirectoryErrorsNameTheTensor()
    {
        var (golden, model, _) = GoldenSetup();
        var weights = SafeTensors.Read(Path.Combine(model, ModelFiles.WeightsFile));
        // an extra unknown tensor
        SafeTensors.Write(Path.Combine(model, ModelFiles.WeightsFile), [.. weights.Tensors, StTensor.FromFloats("h.0.mystery", [1f], 1)]);
        var e = Assert.Throws<InputException>(() => ModelFiles.LoadGpt2(model, CpuBackend<double>.Instance));
        Assert.Contains("h.0.mystery", e.Message);
        // a missing tensor
        SafeTensors.Write(Path.Combine(model, ModelFiles.WeightsFile), weights.Tensors.Where(t => t.Name != "h.1.ln_2.bias"));
        e = Assert.Throws<InputException>(() => ModelFiles.LoadGpt2(model, CpuBackend<double>.Instance));
        Assert.Contains("h.1.ln_2.bias", e.Message);
        // a wrong shape
        SafeTensors.Write(Path.Combine(model, ModelFiles.WeightsFile), weights.Tensors.Select(t => t.Name == "wpe.weight" ? StTensor.FromFloats(t.Name, new float[24], 1, 24) : t));
        e = Assert.Throws<InputException>(() => ModelFiles.LoadGpt2(model, CpuBackend<double>.Instance));
        Assert.Contains("wpe.weight", e.Message);
        Assert.Contains("[11, 24]", e.Message);
        // the transformer. prefix and the known unused buffers load fine
        SafeTensors.Write(Path.Combine(model, ModelFiles.WeightsFile),
            [.. weights.Tensors.Select(t => new StTensor("transformer." + t.Name, t.DType, t.Shape, t.Bytes)),
             StTensor.FromFloats("transformer.h.0.attn.bias", new float[4], 1, 1, 2, 2), StTensor.FromFloats("h.1.attn.masked_bias", [-1e4f])]);
        var loaded = ModelFiles.LoadGpt2(model, CpuBackend<double>.Instance);
        Assert.Equal(golden["wte.weight"].ToDoubles(), loaded.Wte.Value.Data);
    }
}
