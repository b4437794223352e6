using System.CommandLine;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Cli.Commands;

static class InitCommand
{
    public static Command Create()
    {
        var init = new InitOptions();
        var outDir = new Option<string>("--out") { Description = "model directory to write (config.json + model.safetensors)", Required = true };
        var dtype = Common.Dtype();
        var cmd = new Command("init", "Create a randomly initialised model in the Hugging Face layout.");
        init.AddTo(cmd);
        cmd.Options.Add(outDir);
        cmd.Options.Add(dtype);
        cmd.SetAction(r =>
        {
            string dir = r.GetValue(outDir)!;
            int seed = r.GetValue(init.Seed);
            string what;
            if (Common.IsF64(r.GetValue(dtype)!))
            {
                var m = init.NewModel(r, null, CpuBackend<double>.Instance, seed);
                ModelFiles.Save(m, dir, StDType.F64);
                what = $"{(m.Arch == "bert" ? "BERT" : "GPT-2")} with {InitOptions.ParameterCount(m):N0} parameters";
            }
            else
            {
                var m = init.NewModel(r, null, CpuBackend<float>.Instance, seed);
                ModelFiles.Save(m, dir, StDType.F32);
                what = $"{(m.Arch == "bert" ? "BERT" : "GPT-2")} with {InitOptions.ParameterCount(m):N0} parameters";
            }
            Console.WriteLine($"wrote {dir}: {what}");
            return 0;
        });
        return cmd;
    }
}
