using System.CommandLine;
using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Cli.Commands;

static class TrainCommand
{
    public static Command Create()
    {
        var init = new InitOptions();
        var model = new Option<string?>("--model") { Description = "start from this model directory (else a new model from the init flags)" };
        var data = new Option<string>("--data") { Description = "synthetic:induction | synthetic:cfg | synthetic:bio | text:PATH | chars:PATH | shards:GLOB", Required = true };
        var steps = new Option<int>("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => 200 };
        var batch = new Option<int>("--batch") { Description = "sequences per micro-batch B", DefaultValueFactory = _ => 8 };
        var seq = new Option<int>("--seq") { Description = "tokens per sequence T", DefaultValueFactory = _ => 64 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => 1e-3 };
        var warmup = new Option<int?>("--warmup") { Description = "warm-up steps (default min(100, steps/10))" };
        var accum = new Option<int>("--grad-accum") { Description = "micro-batches per step", DefaultValueFactory = _ => 1 };
        var evalEvery = new Option<int>("--eval-every") { Description = "evaluate and checkpoint every N steps", DefaultValueFactory = _ => 50 };
        var evalBatches = new Option<int>("--eval-batches") { Description = "val batches per evaluation", DefaultValueFactory = _ => 4 };
        var wd = new Option<double>("--weight-decay") { Description = "AdamW weight decay on matrices and embeddings", DefaultValueFactory = _ => 0.1 };
        var clip = new Option<double>("--clip") { Description = "global gradient-norm clip (0: off)", DefaultValueFactory = _ => 1.0 };
        var optimizer = new Option<string>("--optimizer") { Description = "adamw | sgd | sgdm (Nesterov) | ecd (energy-conserving descent; constant lr, default 1.0)", DefaultValueFactory = _ => "adamw" };
        var sym = new SymmetryOptions();
        var outDir = new Option<string>("--out") { Description = "run folder", Required = true };
        var resume = new Option<bool>("--resume") { Description = "continue from the checkpoint in --out" };
        var dtype = Common.Dtype();
        var device = Common.Device();
        var threads = Common.Threads();
        var vocabTxt = new Option<string?>("--vocab-txt") { Description = "bert: a WordPiece vocab.txt for text:PATH data (BertTokenizer)" };
        var track = new Option<bool>("--track-conserved") { Description = "log the drift of the per-head conserved quantities W̃_QᵀW̃_Q − W̃_KᵀW̃_K, W̃_VᵀW̃_V − W_O^h·W_O^hᵀ to metrics.jsonl (constant under gradient flow)" };

        var cmd = new Command("train", "Train a GPT-2 (next token) or a BERT (masked LM) — new or from --model — on a data source; writes a run folder.");
        foreach (Option o in new Option[] { model, data, steps, batch, seq, lr, warmup, accum, evalEvery, evalBatches, wd, clip, optimizer, outDir, resume, dtype, device, threads, vocabTxt, track })
            cmd.Options.Add(o);
        init.AddTo(cmd);
        sym.AddTo(cmd);
        cmd.Options.Add(GaugeFixCommands.GaugeFixedOption());
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            int seed = r.GetValue(init.Seed);
            string run = r.GetValue(outDir)!;
            bool isResume = r.GetValue(resume);
            // The architecture decides the objective: BERT trains on masked-LM rows of the same data.
            string arch = isResume && Trainer<float>.FindCheckpoint(run) is string ck ? ModelFiles.ModelType(ck)
                : r.GetValue(model) is string mp ? ModelFiles.ModelType(mp) : init.ArchOf(r);
            if (r.GetValue(init.EncoderOnly)) throw new InputException("--encoder-only: an encoder-only BERT has no MLM head to train; create one with mt init");
            if (arch != "bert" && r.GetValue(vocabTxt) is not null) throw new InputException("--vocab-txt: WordPiece vocabularies are for BERT (use --arch bert)");
            IDataSource source = arch == "bert" ? MlmSources.Create(r.GetValue(data)!, seed, r.GetValue(vocabTxt))
                : DataSources.Create(r.GetValue(data)!, seed);
            var kind = SymmetryOptions.Kind(r.GetValue(optimizer)!);
            bool ecd = kind == OptimizerKind.Ecd;   // ECD: constant Δt (no warm-up or decay), no clipping, no decay unless asked
            var config = new TrainConfig(r.GetValue(steps), r.GetValue(batch), r.GetValue(seq), SymmetryOptions.LearningRate(r, lr, kind),
                ecd ? 0 : r.GetValue(warmup), MinLrFraction: ecd ? 1.0 : 0.1,
                GradAccum: r.GetValue(accum), EvalEvery: r.GetValue(evalEvery), EvalBatches: r.GetValue(evalBatches), Seed: seed,
                Optimizer: sym.Apply(r, new OptimizerConfig(kind, WeightDecay: ecd && r.GetResult(wd) is null or { Implicit: true } ? 0 : r.GetValue(wd), GradClip: r.GetValue(clip))));
            if (sym.Requested(r) && (isResume || r.GetValue(model) is not null))
                throw new InputException("--symmetry-breaking/--mlp: apply to a new model (init flags); a checkpoint keeps the settings it was trained with");
            config.Validate();
            bool tr = r.GetValue(track);
            if (Common.IsF64(r.GetValue(dtype)!, allowBf16: true)) Run<double>(r, init, r.GetValue(model), source, config, run, isResume, Common.Backend<double>(r.GetValue(device)!), tr, sym);
            else Run<float>(r, init, r.GetValue(model), source, config, run, isResume, Common.Backend<float>(r.GetValue(device)!, r.GetValue(dtype)!), tr, sym);
            return 0;
        });
        return cmd;
    }

    static void Run<F>(ParseResult r, InitOptions init, string? modelPath, IDataSource data, TrainConfig config, string run, bool resume, IBackend<F> ops, bool track = false, SymmetryOptions? sym = null)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        ILanguageModel<F> model;
        if (resume)
        {
            var ck = Trainer<F>.FindCheckpoint(run) ?? throw new InputException($"--resume: no checkpoint in {run}");
            model = ModelFiles.Load(ck, ops);
        }
        else if (modelPath is not null) model = ModelFiles.Load(modelPath, ops);
        else if (sym is not null && sym.Requested(r) && init.ArchOf(r) == "bert")
        {
            var b = new Bert<F>(sym.ApplyTo(r, init.BertConfig(r, data.VocabSize)), ops);
            b.InitializeRandom(config.Seed);
            model = b;
        }
        else if (sym is not null && sym.Requested(r))
        {
            var g = new Gpt2<F>(sym.ApplyTo(r, init.Config(r, data.VocabSize)), ops);
            g.InitializeRandom(config.Seed);
            model = g;
        }
        else model = init.NewModel(r, data.VocabSize, ops, config.Seed);
        if (model is Bert<F> { Config.MlmHead: false })
            throw new InputException($"--model: {modelPath} is an encoder-only BERT (no MLM head), so there is nothing to train it on; use mt forward, mt embed, mt gauge or mt analyze");
        Action<Trainer<F>>? setup = null;
        if (config.Opt.Kind == OptimizerKind.Ecd)
            setup = t =>
            {
                t.StepMetrics += (_, line) => { if (t.Optimizer.Ecd!.LastSkipped) line["ecd_skipped"] = true; };
                t.Evaluated += e =>
                {
                    if (t.Optimizer.Ecd!.Skipped > 0)
                        Spectre.Console.AnsiConsole.MarkupLine($"  [yellow]ecd: {t.Optimizer.Ecd.Skipped} step(s) skipped so far because F − F₀ ≤ 0 (F₀ = {config.Opt.EcdF0}); lower --ecd-f0 below the reachable loss[/]");
                };
            };
        if (track)
        {
            // The reference C₀ is the starting model's (kept in the run folder, so a resumed run keeps measuring from it).
            var tracker = new MiniTransformer.Gauge.ConservedTracker<F>(model, run, reuse: resume);
            var prev = setup;
            setup = t => { prev?.Invoke(t); t.StepMetrics += (_, line) => tracker.AddTo(line); };
        }
        if (r.GetValue<bool>("--gauge-fixed")) setup = GaugeFixCommands.SetupTraining(model, run, resume, config, setup);
        TrainRun.Execute(model, data, config, ops, run, resume, $"mt train: {data.Spec}{(model.Arch == "bert" ? " (BERT masked LM)" : "")}", setup: setup);
    }
}
