using System.CommandLine;
using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json.Nodes;
using MiniTransformer.Analysis;
using MiniTransformer.Backends;
using MiniTransformer.Data;
using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Pretrained;
using MiniTransformer.Training;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt analyze trajectory</c>: each token's hidden state after the embeddings and after every block (see
/// <see cref="Trajectory"/>), for one or more models and, beside each, a random-weight model of the same configuration
/// (the engine's initialisation, fixed seed) on the same tokens. Per layer, mean ± std over tokens of the norms, steps,
/// turning angles and energies of the normalised states, and the energy's spread over the layers; report.md and PNGs.
/// </summary>
static class AnalyzeTrajectoryCommand
{
    /// <summary>Varied English sentences (topics, lengths, questions, numbers, punctuation), the default input of a WordPiece BERT.</summary>
    public static readonly string[] Sentences =
    [
        "The cat slept on the warm windowsill all afternoon.",
        "Interest rates rose by a quarter of a percentage point on Tuesday.",
        "Can you tell me where the nearest train station is?",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "She finished the marathon in three hours and twelve minutes.",
        "The committee postponed its decision until after the holidays.",
        "Water boils at 100 degrees Celsius at sea level.",
        "Why do leaves change colour in the autumn?",
        "He forgot his umbrella, so he arrived soaked to the skin.",
        "The new library opens at nine o'clock every morning except Sunday.",
        "A prime number has exactly two distinct divisors.",
        "The orchestra played Beethoven's ninth symphony to a full house.",
        "Please remember to lock the back door before you leave.",
        "Global temperatures have risen by about 1.1 degrees since pre-industrial times.",
        "My grandmother grows tomatoes, beans and courgettes in her garden.",
        "The software update fixed the bug but slowed down the start-up.",
        "Ancient Rome was not built in a day.",
        "Which team won the football match last night?",
        "The detective examined the muddy footprints near the gate.",
        "Electric cars are becoming cheaper to buy and to run.",
        "I would rather walk than wait forty minutes for the bus.",
        "The volcano erupted without warning, covering the village in ash.",
        "Our flight to Lisbon was delayed by two hours because of fog.",
        "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
        "Mathematics is the language in which the universe is written.",
        "The children built a sandcastle and watched the tide wash it away.",
        "He signed the contract without reading the small print.",
        "Honey never spoils if it is stored in a sealed jar.",
        "What time does the pharmacy close on Saturdays?",
        "The museum's new exhibition explores the history of printing.",
        "After years of drought, the river finally flooded its banks.",
        "Quantum computers exploit superposition to explore many states at once.",
        "The bakery on the corner sells the best croissants in town!",
        "Two plus two equals four, and four times four is sixteen.",
        "The senator denied every accusation during the televised hearing.",
        "Birds migrate south when the days grow shorter.",
    ];

    public static Command Create()
    {
        var texts = new Argument<string[]>("text") { Description = "sentences (default: 36 built-in varied sentences for a WordPiece BERT, val rows of the data for a model trained here)", Arity = ArgumentArity.ZeroOrMore };
        var file = new Option<string?>("--file") { Description = "a text file, one sentence per line (instead of TEXT)" };
        var models = new Option<string[]>("--model") { Description = $"model directory, repeatable (default: minilm, all-MiniLM-L6-v2 in {MiniLm.DefaultDir}, installed on first use)" };
        var data = new Option<string?>("--data") { Description = "data spec whose tokenizer and val rows a model without vocab.txt uses (default: the model's data.json)" };
        var sequences = new Option<int>("--sequences") { Description = "val rows per model that reads a data spec", DefaultValueFactory = _ => 16 };
        var seq = new Option<int>("--seq") { Description = "tokens per val row (at most the model's context)", DefaultValueFactory = _ => 64 };
        var seed = new Option<int>("--seed") { Description = "seed of the random-weight twins (the engine's own initialisation)", DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--out") { Description = "report folder: report.md and PNG plots", DefaultValueFactory = _ => Path.Combine("runs", "trajectory") };
        var dtype = Common.Dtype();
        var threads = Common.Threads();
        var cmd = new Command("trajectory", "Per layer, mean ± std over tokens: hidden-state norms, step sizes, turning angles, energy of the normalised states and its spread; each model beside a random-weight twin.");
        cmd.Arguments.Add(texts);
        foreach (Option o in new Option[] { file, models, data, sequences, seq, seed, output, dtype, threads }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            var o = new Options(r.GetValue(texts) ?? [], r.GetValue(file), r.GetValue(models) is { Length: > 0 } m ? m : ["minilm"], r.GetValue(data),
                r.GetValue(sequences), r.GetValue(seq), r.GetValue(seed), r.GetValue(output)!, r.GetValue(dtype)!);
            if (o.Texts.Length > 0 && o.File is not null) throw new InputException("--file: give sentences either as TEXT or in --file, not both");
            if (o.Sequences < 1) throw new InputException($"--sequences: must be at least 1 (got {o.Sequences})");
            if (o.Seq < 3) throw new InputException($"--seq: must be at least 3 (got {o.Seq})");
            string[] user = o.File is null ? o.Texts : ReadLines(o.File);
            var results = Common.IsF64(o.Dtype) ? Analyze(Common.Backend<double>("cpu"), o, user) : Analyze(Common.Backend<float>("cpu"), o, user);
            Directory.CreateDirectory(o.Out);
            foreach (var x in results) Print(x);
            var pngs = Plots(results, o.Out);
            File.WriteAllText(Path.Combine(o.Out, "report.md"), Report(results, o, pngs));
            Console.WriteLine($"wrote {Path.Combine(o.Out, "report.md")} and {string.Join(", ", pngs)}");
            return 0;
        });
        return cmd;
    }

    sealed record Options(string[] Texts, string? File, string[] Models, string? Data, int Sequences, int Seq, int Seed, string Out, string Dtype);

    /// <summary>One model beside its random twin: the same tokens through both.</summary>
    sealed record Result(string Label, string Describe, string Inputs, TrajectorySummary Trained, TrajectorySummary Random, int Width);

    static string[] ReadLines(string path)
    {
        if (!System.IO.File.Exists(path)) throw new InputException($"--file: {path} does not exist");
        var lines = System.IO.File.ReadAllLines(path).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        if (lines.Length == 0) throw new InputException($"--file: {path} has no non-empty line");
        return lines;
    }

    static List<Result> Analyze<F>(IBackend<F> ops, Options o, string[] user) where F : unmanaged, IFloatingPointIeee754<F>
    {
        var results = new List<Result>();
        foreach (string spec in o.Models)
        {
            bool minilm = spec == "minilm";
            string dir = minilm ? MiniLm.Resolve(null, Console.Error.WriteLine) : spec;
            if (!Directory.Exists(dir)) throw new InputException($"--model: {dir} is not a directory");
            var model = ModelFiles.Load(dir, ops);
            var (rows, from, to, inputs) = Inputs(model, dir, o, user);
            var twin = RandomTwin(model, ops, o.Seed);
            var trained = new List<TokenTrajectory>();
            var random = new List<TokenTrajectory>();
            foreach (var ids in rows)
            {
                int end = to(ids.Length);
                trained.AddRange(Trajectory.Run(model, ids, from, end));
                random.AddRange(Trajectory.Run(twin, ids, from, end));
            }
            if (trained.Count == 0) throw new InputException($"--model {spec}: the inputs left no token to analyse");
            string label = minilm ? "all-MiniLM-L6-v2" : Label(dir);
            int width = Trajectory.States(model)[0].Length / rows[^1].Length;
            results.Add(new Result(label, model.Describe(), inputs, TrajectorySummary.Of(trained), TrajectorySummary.Of(random), width));
        }
        return results;
    }

    /// <summary>A run's checkpoint folder is named by its run folder.</summary>
    static string Label(string dir)
    {
        string full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        string name = Path.GetFileName(full);
        return name == "checkpoint" ? Path.GetFileName(Path.GetDirectoryName(full)!) : name;
    }

    /// <summary>
    /// The token rows a model reads and which positions count: a BERT with a WordPiece vocab.txt reads sentences
    /// ([CLS] and [SEP] left out of the statistics); a model trained here reads its data's tokenizer (the user's
    /// sentences) or its val rows (BERT: [CLS] row [SEP], unmasked).
    /// </summary>
    static (List<int[]> Rows, int From, Func<int, int> To, string Inputs) Inputs<F>(ILanguageModel<F> model, string dir, Options o, string[] user)
        where F : unmanaged, IFloatingPointIeee754<F>
    {
        string vocab = Path.Combine(dir, "vocab.txt");
        bool bert = model is Bert<F>;
        if (bert && System.IO.File.Exists(vocab))
        {
            var tok = new BertUncasedTokenizer(vocab);
            if (tok.Vocab.Length > model.VocabSize) throw new InputException($"{vocab}: {tok.Vocab.Length} tokens, the model has {model.VocabSize}");
            var sentences = user.Length > 0 ? user : Sentences;
            var rows = sentences.Select(s => tok.Encode(s, Math.Min(MiniLm.MaxTokens, model.MaxSequence))).ToList();
            return (rows, 1, T => T - 1, $"{sentences.Length} {(user.Length > 0 ? "given" : "built-in")} sentences, WordPiece ({rows.Sum(x => x.Length - 2)} tokens; [CLS] and [SEP] left out)");
        }
        string? spec = o.Data;
        int seed = 1;   // the data's construction seed: the model's data.json's, else 1 (not --seed, which is the twins')
        string info = Path.Combine(dir, Trainer<float>.DataFile);
        if (spec is null && System.IO.File.Exists(info) && JsonNode.Parse(System.IO.File.ReadAllText(info)) is JsonObject j)
        {
            spec = (string?)j["data"];
            seed = (int?)j["seed"] ?? seed;
        }
        if (spec is null) throw new InputException($"--model {dir}: no vocab.txt and no data.json says which tokenizer it reads; pass --data SPEC");
        int T = Math.Min(o.Seq, model.MaxSequence);
        if (bert)
        {
            var mlm = MlmSources.Create(spec, seed);
            if (mlm.VocabSize > model.VocabSize) throw new InputException($"--data: {spec} needs {mlm.VocabSize} tokens, the model has {model.VocabSize}");
            var sp = mlm.Tokenizer.Special;
            List<int[]> rows = user.Length > 0
                ? [.. user.Select(s => (int[])[sp.Cls, .. Cut(mlm.Tokenizer.Encode(s), T - 2), sp.Sep])]
                : [.. ValRows(mlm.Inner, o.Sequences, T - 2).Select(x => (int[])[sp.Cls, .. x, sp.Sep])];
            return (rows, 1, n => n - 1, user.Length > 0
                ? $"{user.Length} given sentences, {spec}'s tokenizer ({rows.Sum(x => x.Length - 2)} tokens; [CLS] and [SEP] left out)"
                : $"{o.Sequences} val rows of {spec} ([CLS] + {T - 2} tokens + [SEP], unmasked; [CLS] and [SEP] left out)");
        }
        var src = DataSources.Create(spec, seed);
        if (src.VocabSize > model.VocabSize) throw new InputException($"--data: {spec} needs {src.VocabSize} tokens, the model has {model.VocabSize}");
        List<int[]> gpt = user.Length > 0 ? [.. user.Select(s => Cut(src.Tokenizer.Encode(s), T))] : ValRows(src, o.Sequences, T);
        if (gpt.Any(x => x.Length == 0)) throw new InputException("a sentence has no token");
        return (gpt, 0, n => n, user.Length > 0 ? $"{user.Length} given sentences, {spec}'s tokenizer ({gpt.Sum(x => x.Length)} tokens)" : $"{o.Sequences} val rows of {spec} ({T} tokens each)");
    }

    static int[] Cut(int[] ids, int n) => ids.Length > n ? ids[..n] : ids;

    static List<int[]> ValRows(IDataSource src, int count, int T)
    {
        var rows = new List<int[]>();
        var targets = new int[T];
        for (int i = 0; i < count; i++)
        {
            var ids = new int[T];
            src.GetBatch(Split.Val, i, 1, T, ids, targets);
            rows.Add(ids);
        }
        return rows;
    }

    /// <summary>The same configuration with the engine's own initialisation (N(0, 0.02) etc.; see InitializeRandom), seeded.</summary>
    static ILanguageModel<F> RandomTwin<F>(ILanguageModel<F> m, IBackend<F> ops, int seed) where F : unmanaged, IFloatingPointIeee754<F>
    {
        switch (m)
        {
            case Bert<F> b: { var r = new Bert<F>(b.Config, ops); r.InitializeRandom(seed); return r; }
            case Gpt2<F> g: { var r = new Gpt2<F>(g.Config, ops); r.InitializeRandom(seed); return r; }
            default: throw new InputException($"trajectory: architecture '{m.Arch}' is not supported");
        }
    }

    // ---------------------------------------------------------------- output

    static string F(double v, string f = "F3") => double.IsFinite(v) ? v.ToString(f, CultureInfo.InvariantCulture) : double.IsNaN(v) ? "—" : "∞";
    static string Pm(MeanStd m, string f = "F3") => m.Count == 0 ? "—" : $"{F(m.Mean, f)} ± {F(m.Std, f)}";

    /// <summary>Spread over the layers of the mean energy profile E̅_ℓ: CV and max/min.</summary>
    static (double Cv, double MaxMin) ProfileSpread(TrajectorySummary s)
    {
        var e = s.Energies.Select(x => x.Mean).ToArray();
        double m = e.Average();
        double cv = Math.Sqrt(e.Sum(x => (x - m) * (x - m)) / e.Length) / m;
        return (cv, e.Min() > 0 ? e.Max() / e.Min() : double.PositiveInfinity);
    }

    static void Print(Result x)
    {
        Console.WriteLine($"{x.Label}: {x.Describe} · {x.Inputs} · {x.Trained.Tokens} tokens");
        foreach (var (name, s) in new[] { ("trained", x.Trained), ("random ", x.Random) })
        {
            var (cv, mm) = ProfileSpread(s);
            Console.WriteLine($"  {name}  ‖h_ℓ‖ {string.Join(" ", s.Norms.Select(n => F(n.Mean, "F2")))}   E_ℓ {string.Join(" ", s.Energies.Select(n => F(n.Mean, "F4")))}   " +
                $"θ_ℓ {string.Join(" ", s.Angles.Select(n => F(n.Mean, "F0")))}°   E spread: CV {F(cv)} (per token {Pm(s.EnergyCv)}), max/min {F(mm, "F1")}");
        }
    }

    static string Table(TrajectorySummary s)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| ℓ | ‖h_ℓ‖ | ‖h_ℓ − h_ℓ₋₁‖ | ‖h_ℓ − h_ℓ₋₁‖ / ‖h_ℓ₋₁‖ | θ_ℓ = ∠(Δ_ℓ, Δ_ℓ₋₁) (°) | E_ℓ = ½‖x_ℓ − x_ℓ₋₁‖² |");
        sb.AppendLine("|---:|---:|---:|---:|---:|---:|");
        for (int l = 0; l <= s.Layers; l++)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {l} | {Pm(s.Norms[l], "F2")} | {(l > 0 ? Pm(s.Steps[l - 1], "F2") : "")} | {(l > 0 ? Pm(s.RelativeSteps[l - 1]) : "")} | " +
                $"{(l > 1 ? Pm(s.Angles[l - 2], "F1") : "")} | {(l > 0 ? Pm(s.Energies[l - 1], "F4") : "")} |");
        return sb.ToString();
    }

    static string Report(List<Result> results, Options o, IReadOnlyList<string> pngs)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Layer trajectories of the hidden states\n");
        var cmd = new StringBuilder("mt analyze trajectory");
        foreach (var t in o.Texts) cmd.Append(CultureInfo.InvariantCulture, $" \"{t}\"");
        if (o.File is not null) cmd.Append(CultureInfo.InvariantCulture, $" --file {o.File}");
        foreach (var m in o.Models) cmd.Append(CultureInfo.InvariantCulture, $" --model {m}");
        if (o.Data is not null) cmd.Append(CultureInfo.InvariantCulture, $" --data {o.Data}");
        cmd.Append(CultureInfo.InvariantCulture, $" --sequences {o.Sequences} --seq {o.Seq} --seed {o.Seed} --dtype {o.Dtype} --out {o.Out}");
        sb.AppendLine($"Command: `{cmd}`\n");
        sb.AppendLine($"Seed {o.Seed}: each model's random-weight twin has the same configuration and the engine's own initialisation " +
            "(`InitializeRandom(seed)`: N(0, 0.02²) weights, GPT-2's residual projections N(0, (0.02/√(2L))²), zero biases, unit LayerNorm gains); " +
            "it reads exactly the same tokens. Data rows come from the val split (data seed: the model's data.json's, else 1).\n");
        sb.AppendLine("Per token, h_0 is the state after the embeddings (BERT: after the embedding LayerNorm; GPT-2: the residual stream wte + wpe) " +
            "and h_ℓ the state after block ℓ (BERT: the block's output LayerNorm; GPT-2: the residual stream, ln_f left out). " +
            "Δ_ℓ = h_ℓ − h_ℓ₋₁; θ_ℓ is the turning angle between successive steps (0° straight on, 180° straight back); " +
            "x_ℓ = h_ℓ/‖h_ℓ‖ and E_ℓ = ½‖x_ℓ − x_ℓ₋₁‖² = 1 − cos(h_ℓ₋₁, h_ℓ) is the energy of the normalised path in layer ℓ. " +
            "Every cell is the mean ± std (population) over tokens. The spread of E over the layers is given per token (CV = std_ℓ/mean_ℓ, max_ℓ/min_ℓ; " +
            "a token with some E_ℓ = 0 has max/min = ∞ and is left out of that mean) and for the mean profile E̅_ℓ.\n");
        sb.AppendLine("## Summary\n");
        sb.AppendLine("| model | weights | tokens | ‖h_L‖/‖h_0‖ | mean θ (°) | Σ_ℓ E̅_ℓ | E̅ profile CV | E̅ profile max/min | per-token CV of E | per-token max/min of E |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var x in results)
            foreach (var (name, s) in new[] { ("trained", x.Trained), ("random", x.Random) })
            {
                var (cv, mm) = ProfileSpread(s);
                double growth = s.Norms[^1].Mean / s.Norms[0].Mean;
                double theta = s.Angles.Length == 0 ? double.NaN : s.Angles.Average(a => a.Mean);
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {x.Label} | {name} | {s.Tokens} | {F(growth, "F2")} | {F(theta, "F1")} | {F(s.Energies.Sum(e => e.Mean), "F4")} | " +
                    $"{F(cv)} | {F(mm, "F2")} | {Pm(s.EnergyCv)} | {Pm(s.EnergyMaxOverMin, "F2")} |");
            }
        sb.AppendLine();
        foreach (var x in results)
        {
            sb.AppendLine($"## {x.Label}\n");
            sb.AppendLine($"{x.Describe}; inputs: {x.Inputs}; {x.Trained.Tokens} tokens.\n");
            sb.AppendLine("Trained (pretrained) weights:\n");
            sb.AppendLine(Table(x.Trained));
            sb.AppendLine($"Random weights (seed {o.Seed}):\n");
            sb.AppendLine(Table(x.Random));
        }
        sb.AppendLine("## Plots\n");
        sb.AppendLine("Solid: trained weights; dashed: the random twin; bars: ± std over tokens.\n");
        foreach (var p in pngs) sb.AppendLine($"![{Path.GetFileNameWithoutExtension(p)}]({p})\n");
        return sb.ToString();
    }

    /// <summary>One PNG per quantity, a curve per model (solid) and its random twin (dashed), ± std bars; the style of the other plots (540 high, legend beside).</summary>
    static List<string> Plots(List<Result> results, string dir)
    {
        var files = new List<string>();
        void One(string file, string title, string y, Func<TrajectorySummary, MeanStd[]> f, int first, Func<Result, double> scale)
        {
            var plt = new ScottPlot.Plot();
            for (int i = 0; i < results.Count; i++)
            {
                var x = results[i];
                var color = ScottPlot.Palette.Default.GetColor(i);
                foreach (var (s, random) in new[] { (x.Trained, false), (x.Random, true) })
                {
                    var v = f(s);
                    if (v.Length == 0) continue;
                    double k = scale(x);
                    var xs = Enumerable.Range(first, v.Length).Select(l => (double)l).ToArray();
                    var ys = v.Select(m => m.Mean * k).ToArray();
                    var sc = plt.Add.Scatter(xs, ys);
                    sc.LegendText = $"{x.Label} {(random ? "random" : "trained")}";
                    sc.Color = color;
                    sc.LineWidth = 2; sc.MarkerSize = 4;
                    if (random) sc.LinePattern = ScottPlot.LinePattern.Dashed;
                    var eb = plt.Add.ErrorBar(xs, ys, v.Select(m => m.Std * k).ToArray());
                    eb.Color = color;
                }
            }
            plt.Title(title);
            plt.XLabel("layer l");
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1);
            plt.YLabel(y);
            plt.ShowLegend(ScottPlot.Edge.Right);   // beside the axes: the curves fill every corner
            plt.SavePng(Path.Combine(dir, file), 1100, 540);
            files.Add(file);
        }
        // Plain labels: the plot font has no ℓ or subscript glyphs.
        One("norm.png", "Hidden-state norm per layer (RMS per coordinate)", "|h_l| / sqrt(d)", s => s.Norms, 0, x => 1 / Math.Sqrt(x.Width));
        One("step.png", "Relative step per layer", "|h_l - h_(l-1)| / |h_(l-1)|", s => s.RelativeSteps, 1, _ => 1);
        One("angle.png", "Turning angle between successive steps", "angle(h_l - h_(l-1), h_(l-1) - h_(l-2)) (degrees)", s => s.Angles, 2, _ => 1);
        One("energy.png", "Energy of the normalised path per layer", "E_l = 1/2 |x_l - x_(l-1)|^2,  x = h/|h|", s => s.Energies, 1, _ => 1);
        return files;
    }
}
