using System.CommandLine;
using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.IO;
using MiniTransformer.Models;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt forward</c>: runs a model on input_ids from a safetensors file and writes logits, hidden_states, loss,
/// (an encoder-only BERT: hidden_states and pooler_output, no logits, and targets refused) and optionally every parameter gradient (<c>grad/NAME</c>) and every named activation (<c>act/NAME</c>).
/// </summary>
static class ForwardCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model directory (config.json + model.safetensors) or llm.c .bin", Required = true };
        var input = new Option<string>("--input") { Description = "safetensors with input_ids [B,T]; optional targets, attention_mask, token_type_ids", Required = true };
        var output = new Option<string>("--out") { Description = "output safetensors", Required = true };
        var grads = new Option<bool>("--grads") { Description = "also write grad/<parameter> (needs targets)" };
        var acts = new Option<bool>("--activations") { Description = "also write every named activation as act/<name>" };
        var dtype = Common.Dtype();
        var device = Common.Device();
        var threads = Common.Threads();
        var cmd = new Command("forward", "Run a model on a batch of token ids and write its outputs as safetensors.");
        foreach (Option o in new Option[] { model, input, output, dtype, device, grads, acts, threads }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            var args = (r.GetValue(model)!, r.GetValue(input)!, r.GetValue(output)!, r.GetValue(grads), r.GetValue(acts));
            if (Common.IsF64(r.GetValue(dtype)!, allowBf16: true)) Run(Common.Backend<double>(r.GetValue(device)!), args, StDType.F64);
            else Run(Common.Backend<float>(r.GetValue(device)!, r.GetValue(dtype)!), args, StDType.F32);
            return 0;
        });
        return cmd;
    }

    static int[] IntTensor(SafeTensorFile f, string name, int B, int T)
    {
        var t = f[name];
        if (t.DType is not (StDType.I32 or StDType.I64 or StDType.U8 or StDType.BOOL))
            throw new InputException($"{f.Path}: '{name}' has dtype {t.DType}, expected I32, I64, U8 or BOOL");
        if (t.Shape.Length != 2 || t.Shape[0] != B || t.Shape[1] != T)
            throw new InputException($"{f.Path}: '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{B}, {T}] like input_ids");
        return t.ToInt32s();
    }

    static void Run<F>(IBackend<F> ops, (string Model, string Input, string Out, bool Grads, bool Acts) a, StDType dtype)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        var input = SafeTensors.Read(a.Input);
        if (!input.TryGet("input_ids", out var idsT)) throw new InputException($"{a.Input}: no tensor named 'input_ids'");
        if (idsT.Shape.Length != 2 || idsT.Shape[0] <= 0 || idsT.Shape[1] <= 0)
            throw new InputException($"{a.Input}: 'input_ids' has shape [{string.Join(", ", idsT.Shape)}], expected [B, T]");
        int B = (int)idsT.Shape[0], T = (int)idsT.Shape[1];
        var ids = IntTensor(input, "input_ids", B, T);
        int[]? targets = input.TryGet("targets", out _) ? IntTensor(input, "targets", B, T) : null;
        int[]? mask = input.TryGet("attention_mask", out _) ? IntTensor(input, "attention_mask", B, T) : null;
        int[]? types = input.TryGet("token_type_ids", out _) ? IntTensor(input, "token_type_ids", B, T) : null;
        if (a.Grads && targets is null) throw new InputException($"--grads: {a.Input} has no 'targets' to take the gradient of the loss");

        var loaded = ModelFiles.Load(a.Model, ops);
        if (types is not null && loaded is not Bert<F>)
            throw new InputException($"{a.Input}: 'token_type_ids' given, but GPT-2 has no token types (remove it)");
        double sum; int count;
        IEnumerable<(string Name, F[] Data, int[] Shape)> activations;
        var outs = new List<StTensor>();
        if (loaded is Bert<F> bert)
        {
            if (!bert.HasMlmHead && targets is not null)
                throw new InputException($"{a.Input}: 'targets' given, but {a.Model} is an encoder-only BERT (no MLM head, no logits to score): remove them");
            (sum, count) = bert.Forward(ids, targets, B, T, types, mask);
            if (bert.HasMlmHead) outs.Add(ModelFiles.ToStored<F>("logits", bert.Logits.Span, [B, T, bert.VocabSize], dtype));
            outs.Add(ModelFiles.ToStored<F>("hidden_states", bert.Hidden.Span, [B, T, bert.Config.HiddenSize], dtype));
            if (bert.PoolW is not null) outs.Add(ModelFiles.ToStored<F>("pooler_output", bert.Pooled.Span, [B, bert.Config.HiddenSize], dtype));
            activations = bert.Activations();
        }
        else
        {
            var model = (Gpt2<F>)loaded;
            (sum, count) = model.Forward(ids, targets, B, T, mask);
            outs.Add(ModelFiles.ToStored<F>("logits", model.Logits.Span, [B, T, model.VocabSize], dtype));
            outs.Add(ModelFiles.ToStored<F>("hidden_states", model.Hidden.Span, [B, T, model.Config.NEmbd], dtype));
            activations = model.Activations();
        }
        if (targets is not null)
        {
            if (count == 0) throw new InputException($"{a.Input}: every target is -100, so there is no loss");
            outs.Add(ModelFiles.ToStored<F>("loss", [F.CreateTruncating(sum / count)], [], dtype));
        }
        if (a.Acts)
            foreach (var (name, data, shape) in activations)
                outs.Add(ModelFiles.ToStored<F>("act/" + name, data, shape, dtype));
        if (a.Grads)
        {
            loaded.Backward(1.0 / count);
            foreach (var (name, data, shape) in ModelFiles.HfTensors(loaded, p => p.Grad))
                outs.Add(ModelFiles.ToStored<F>("grad/" + name, data, shape, dtype));
        }
        SafeTensors.Write(a.Out, outs, new Dictionary<string, string> { ["model"] = a.Model, ["dtype"] = dtype.ToString() });
        Console.WriteLine($"wrote {a.Out}: {outs.Count} tensors" + (targets is not null ? $", loss {sum / count:F6}" : ""));
    }
}
