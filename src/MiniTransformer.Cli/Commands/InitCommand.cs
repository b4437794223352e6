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
            var config = init.Config(r, null);
            string dir = r.GetValue(outDir)!;
            if (Common.IsF64(r.GetValue(dtype)!))
            {
                var m = new Gpt2<double>(config, CpuBackend<double>.Instance);
                m.InitializeRandom(r.GetValue(init.Seed));
                ModelFiles.Save(m, dir, StDType.F64);
            }
            else
            {
                var m = new Gpt2<float>(config, CpuBackend<float>.Instance);
                m.InitializeRandom(r.GetValue(init.Seed));
                ModelFiles.Save(m, dir, StDType.F32);
            }
            Console.WriteLine($"wrote {dir}: GPT-2 with {config.ParameterCount:N0} parameters");
            return 0;
        });
        return cmd;
    }
}
