using System.CommandLine;
using System.Globalization;
using System.Text;
using MiniTransformer.Analysis;
using MiniTransformer.Backends.Cpu;
using MiniTransformer.Pretrained;

namespace MiniTransformer.Cli.Commands;

/// <summary>
/// <c>mt experiment rotation --from happy --to ecstatic --out DIR</c>: turns one word's embedding into another's along
/// the great circle of the embedding space (<see cref="Geodesic"/>) and lists, at each step, the nearest vocabulary
/// words by cosine; optionally the same for contextual vectors (the last hidden state of the word inside a template
/// sentence). Writes report.md and path.png (the path and its neighbours in the top three principal components).
/// </summary>
static class ExperimentRotationCommand
{
    public static Command Create()
    {
        var from = new Option<string>("--from") { Description = "the word to start from", Required = true };
        var to = new Option<string>("--to") { Description = "the word to turn toward", Required = true };
        var model = new Option<string?>("--model") { Description = $"BERT model directory with vocab.txt (default: all-MiniLM-L6-v2 in {MiniLm.DefaultDir}, installed on first use)" };
        var steps = new Option<int>("--steps") { Description = "steps along the path (steps + 1 points, t = k/steps)", DefaultValueFactory = _ => 16 };
        var k = new Option<int>("--neighbours") { Description = "nearest words listed per step", DefaultValueFactory = _ => 5 };
        var wholeWords = new Option<bool>("--whole-words") { Description = "leave WordPiece continuations (##…) out of the neighbours" };
        var context = new Option<string>("--context") { Description = "template sentence for the contextual path, {} marks the word ('none' skips it)", DefaultValueFactory = _ => "I feel {} today ." };
        var contextVocab = new Option<int>("--context-vocab") { Description = "contextual neighbours are searched among this many alphabetic whole words from the top of vocab.txt (≈ the most frequent), plus the static neighbours", DefaultValueFactory = _ => 2000 };
        var outDir = new Option<string>("--out") { Description = "output folder (report.md, path.png)", Required = true };
        var threads = Common.Threads();
        var cmd = new Command("rotation", "Rotate one word's embedding toward another along the great circle; nearest words at each step; report.md and a PCA plot.");
        foreach (Option o in new Option[] { from, to, model, steps, k, wholeWords, context, contextVocab, outDir, threads }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            Common.ApplyThreads(r.GetValue(threads));
            int nSteps = r.GetValue(steps), K = r.GetValue(k);
            if (nSteps < 1) throw new InputException($"--steps: must be at least 1 (got {nSteps})");
            if (K < 1) throw new InputException($"--neighbours: must be at least 1 (got {K})");
            string ctx = r.GetValue(context)!;
            bool useContext = !ctx.Equals("none", StringComparison.OrdinalIgnoreCase);
            if (useContext && ctx.Split(' ', StringSplitOptions.RemoveEmptyEntries).Count(w => w == "{}") != 1)
                throw new InputException($"--context: the template must contain {{}} exactly once, as a word of its own (got '{ctx}')");
            string dir = MiniLm.Resolve(r.GetValue(model), Console.Error.WriteLine);
            Run(dir, r.GetValue(from)!, r.GetValue(to)!, nSteps, K, r.GetValue(wholeWords), useContext ? ctx : null, r.GetValue(contextVocab), r.GetValue(outDir)!);
            return 0;
        });
        return cmd;
    }

    sealed record Step(double T, double Angle, double Norm, (int Id, string Token, double Cosine)[] Nearest);

    static void Run(string modelDir, string fromWord, string toWord, int nSteps, int K, bool wholeWords, string? template, int contextVocab, string outDir)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var emb = new SentenceEmbedder<float>(modelDir, CpuBackend<float>.Instance);
        var tok = emb.Tokenizer;
        var wv = WordVectors.FromModel(emb.Model, tok.Vocab, wholeWords);
        var pa = WordVectors.Pieces(tok, fromWord, "--from");
        var pb = WordVectors.Pieces(tok, toWord, "--to");
        var a = wv.WordVector(pa);
        var b = wv.WordVector(pb);
        double theta = Geodesic.Angle(a, b);
        Console.WriteLine($"{emb.Model.Describe()}");
        Console.WriteLine($"{fromWord} = {Pieces(tok, pa)}, {toWord} = {Pieces(tok, pb)}; angle {Deg(theta):F2}°, norms {Geodesic.Norm(a):F4} → {Geodesic.Norm(b):F4}");

        var path = Geodesic.Path(a, b, nSteps);
        var steps = path.Select(p => new Step(p.T, p.Angle, Geodesic.Norm(p.X), wv.Nearest(p.X, K))).ToList();
        foreach (var s in steps) Console.WriteLine($"t={s.T:F3} {Deg(s.Angle),6:F2}°  {Neighbours(s.Nearest)}");

        // Contextual: the last hidden state of the word inside the template, for both endpoints and for candidates.
        List<Step>? ctxSteps = null;
        int ctxCandidates = 0;
        double ctxTheta = double.NaN;
        if (template is not null)
        {
            var words = template.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            int slot = Array.IndexOf(words, "{}");
            string Fill(string w) { var c = (string[])words.Clone(); c[slot] = w; return string.Join(' ', c); }
            var cw = new ContextualWords<float>(emb.Model, tok);
            var candidates = Enumerable.Range(0, tok.Vocab.Length)
                .Where(id => wv.IsCandidate(id) && tok.Vocab[id].All(ch => ch is >= 'a' and <= 'z'))
                .Take(Math.Max(contextVocab, 0))
                .Union(steps.SelectMany(s => s.Nearest.Select(n => n.Id)).Where(id => !tok.Vocab[id].StartsWith("##", StringComparison.Ordinal)))
                .Distinct().ToArray();
            ctxCandidates = candidates.Length;
            var items = new List<(string, int)> { (Fill(fromWord), slot), (Fill(toWord), slot) };
            items.AddRange(candidates.Select(id => (Fill(tok.Vocab[id]), slot)));
            Console.WriteLine($"contextual: '{template}', {candidates.Length} candidate words ...");
            var h = cw.Embed(items);
            var cand = candidates.Select((id, i) => (id, Unit: Geodesic.Unit(h[i + 2]))).ToArray();
            ctxTheta = Geodesic.Angle(h[0], h[1]);
            ctxSteps = [.. Geodesic.Path(h[0], h[1], nSteps).Select(p =>
            {
                var u = Geodesic.Unit(p.X);
                var near = cand.Select(c => (c.id, tok.Vocab[c.id], Geodesic.Dot(c.Unit, u)))
                    .OrderByDescending(x => x.Item3).ThenBy(x => x.id).Take(K).ToArray();
                return new Step(p.T, p.Angle, Geodesic.Norm(p.X), near);
            })];
            foreach (var s in ctxSteps) Console.WriteLine($"ctx t={s.T:F3} {Deg(s.Angle),6:F2}°  {Neighbours(s.Nearest)}");
        }

        Directory.CreateDirectory(outDir);
        var (pca, png) = Plot(outDir, wv, fromWord, toWord, path, steps);
        WriteReport(outDir, emb, fromWord, toWord, pa, pb, theta, steps, template, ctxSteps, ctxCandidates, ctxTheta, pca, wholeWords, clock.Elapsed);
        Console.WriteLine($"wrote {Path.Combine(outDir, "report.md")} and {png} ({clock.Elapsed.TotalSeconds:F1} s)");
    }

    static double Deg(double rad) => rad * 180 / Math.PI;
    static string Pieces(BertUncasedTokenizer tok, int[] ids) => ids.Length == 1 ? tok.Token(ids[0]) : "[" + string.Join(" ", ids.Select(tok.Token)) + "]";
    static string Neighbours((int Id, string Token, double Cosine)[] n) =>
        string.Join(", ", n.Select(x => string.Create(CultureInfo.InvariantCulture, $"{x.Token} {x.Cosine:F3}")));

    /// <summary>
    /// PCA (top three components) of the unit directions of the path points and of every neighbour listed, drawn as
    /// three 2-D panels: PC1–PC2, PC1–PC3, PC2–PC3.
    /// </summary>
    static (Pca Pca, string Png) Plot(string outDir, WordVectors wv, string fromWord, string toWord, Geodesic.Point[] path, List<Step> steps)
    {
        var ids = steps.SelectMany(s => s.Nearest.Select(n => n.Id)).Distinct().ToArray();
        var pathU = path.Select(p => Geodesic.Unit(p.X)).ToArray();
        var nbU = ids.Select(id => Geodesic.Unit(wv.Row(id))).ToArray();
        var pca = Pca.Fit([.. pathU, .. nbU], Math.Min(3, pathU.Length + nbU.Length - 1));
        var pp = pathU.Select(v => pca.Project(v)).ToArray();
        var np = nbU.Select(v => pca.Project(v)).ToArray();
        var mp = new ScottPlot.Multiplot();
        var panels = new[] { (0, 1), (0, 2), (1, 2) }.Where(p => p.Item2 < pca.Components.Length).ToArray();
        ScottPlot.IMultiplotExtensions.AddPlots(mp, panels.Length);
        mp.Layout = new ScottPlot.MultiplotLayouts.Columns();
        for (int i = 0; i < panels.Length; i++)
        {
            var (cx, cy) = panels[i];
            var plt = ScottPlot.IMultiplotExtensions.GetPlot(mp, i);
            var nb = plt.Add.Markers(np.Select(v => v[cx]).ToArray(), np.Select(v => v[cy]).ToArray());
            nb.Color = ScottPlot.Colors.Gray; nb.MarkerSize = 5;
            for (int j = 0; j < ids.Length; j++)
            {
                var t = plt.Add.Text(wv.Vocab[ids[j]], np[j][cx], np[j][cy]);
                t.LabelFontSize = 10; t.LabelFontColor = ScottPlot.Colors.DimGray;
            }
            var line = plt.Add.Scatter(pp.Select(v => v[cx]).ToArray(), pp.Select(v => v[cy]).ToArray());
            line.Color = ScottPlot.Colors.Crimson; line.LineWidth = 2; line.MarkerSize = 6;
            foreach (var (label, v) in new[] { (fromWord, pp[0]), (toWord, pp[^1]) })
            {
                var t = plt.Add.Text(label, v[cx], v[cy]);
                t.LabelFontSize = 14; t.LabelBold = true; t.LabelFontColor = ScottPlot.Colors.Crimson;
            }
            plt.XLabel(string.Create(CultureInfo.InvariantCulture, $"PC{cx + 1} ({100 * pca.ExplainedRatio[cx]:F1}%)"));
            plt.YLabel(string.Create(CultureInfo.InvariantCulture, $"PC{cy + 1} ({100 * pca.ExplainedRatio[cy]:F1}%)"));
            // Explicit limits with room for the labels, which are drawn to the right of and below their points.
            var xs = pp.Concat(np).Select(v => v[cx]).ToArray(); var ys = pp.Concat(np).Select(v => v[cy]).ToArray();
            double xr = Math.Max(xs.Max() - xs.Min(), 1e-9), yr = Math.Max(ys.Max() - ys.Min(), 1e-9);
            plt.Axes.SetLimits(xs.Min() - 0.05 * xr, xs.Max() + 0.18 * xr, ys.Min() - 0.12 * yr, ys.Max() + 0.05 * yr);
            plt.Title(i == 0 ? $"{fromWord} → {toWord}: great-circle path (red) and nearest words" : $"PC{cx + 1}–PC{cy + 1}");
        }
        string png = Path.Combine(outDir, "path.png");
        ScottPlot.IMultiplotExtensions.SavePng(mp, png, 1800, 620);
        return (pca, png);
    }

    static void WriteReport(string outDir, SentenceEmbedder<float> emb, string fromWord, string toWord, int[] pa, int[] pb, double theta,
        List<Step> steps, string? template, List<Step>? ctxSteps, int ctxCandidates, double ctxTheta, Pca pca, bool wholeWords, TimeSpan elapsed)
    {
        var tok = emb.Tokenizer;
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(inv, $"# Rotating *{fromWord}* toward *{toWord}* in the embedding space\n");
        sb.AppendLine(inv, $"Command: `{RunInfo.CommandLine}` · commit {RunInfo.GitCommit} · model {emb.Model.Describe()} · {elapsed.TotalSeconds:F1} s\n");
        sb.AppendLine("## Method\n");
        sb.AppendLine("- **Word vectors**: rows of the word-embedding table (`embeddings.word_embeddings.weight`, before position and " +
            "token-type embeddings and the embedding LayerNorm). A word split into several WordPieces gets the mean of its pieces' rows.");
        sb.AppendLine(inv, $"  *{fromWord}* = {Pieces(tok, pa)}, *{toWord}* = {Pieces(tok, pb)}.");
        sb.AppendLine("- **Path**: the direction follows the great circle between the normalised endpoints, " +
            "slerp(â, b̂; t) = [sin((1−t)θ)·â + sin(tθ)·b̂] / sin θ, at constant angular speed (angle tθ at t); " +
            "the norm is interpolated linearly, ‖x(t)‖ = (1−t)‖a‖ + t‖b‖, so x(0) = a and x(1) = b exactly. " +
            "Neighbours are by cosine, which sees only the direction; the norm is kept so the path stays at the scale of real rows.");
        sb.AppendLine(inv, $"- **Neighbours**: cosine against every row of the table except the bracketed special tokens ([PAD], [CLS], [SEP], [MASK], [UNK], [unusedN]){(wholeWords ? " and WordPiece continuations (##…)" : "; WordPiece continuations (##…) are included")}. The endpoints' own tokens are not excluded.");
        sb.AppendLine(inv, $"- θ({fromWord}, {toWord}) = {Deg(theta):F2}° (cosine {Math.Cos(theta):F4}); ‖a‖ = {steps[0].Norm:F4}, ‖b‖ = {steps[^1].Norm:F4}.\n");
        sb.AppendLine("## Static path (word-embedding table)\n");
        Table(sb, steps);
        if (ctxSteps is not null)
        {
            sb.AppendLine("\n## Contextual path\n");
            sb.Append(inv, $"Both words placed in the template `{template}`; their vectors are the last hidden state (layer 6 output) ");
            sb.Append(inv, $"at the word, averaged over its WordPieces. The same great-circle path joins them (θ = {Deg(ctxTheta):F2}°, cosine {Math.Cos(ctxTheta):F4}). ");
            sb.Append(inv, $"Neighbours: cosine against the contextual vectors of {ctxCandidates} candidate words, each in the same template — the ");
            sb.AppendLine("first alphabetic whole-word tokens of vocab.txt (whose order roughly follows frequency) plus every whole-word static neighbour above.\n");
            Table(sb, ctxSteps);
        }
        sb.AppendLine("\n## Reading\n");
        sb.AppendLine(Reading(tok, fromWord, toWord, pa, pb, steps, "static"));
        if (ctxSteps is not null) sb.AppendLine(Reading(tok, fromWord, toWord, pa, pb, ctxSteps, "contextual"));
        sb.AppendLine("\n## Plot\n");
        sb.Append(inv, $"![path](path.png)\n\n`path.png`: PCA of the unit directions of the {steps.Count} path points and of the {steps.SelectMany(s => s.Nearest.Select(n => n.Id)).Distinct().Count()} static neighbours listed above ");
        sb.Append(inv, $"(centred, SVD in float64); the top three components explain {string.Join(", ", pca.ExplainedRatio.Select(x => (100 * x).ToString("F1", inv) + "%"))} of their variance. ");
        sb.AppendLine(
            "ScottPlot draws in 2-D, so the 3-D projection is shown as three panels: PC1–PC2, PC1–PC3, PC2–PC3. Red: the path, t = 0 … 1; grey: the neighbours.");
        File.WriteAllText(Path.Combine(outDir, "report.md"), sb.ToString());
    }

    /// <summary>Facts read off a path's table: where the nearest word first changes, and what the end is near.</summary>
    static string Reading(BertUncasedTokenizer tok, string fromWord, string toWord, int[] pa, int[] pb, List<Step> steps, string kind)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        string first = steps[0].Nearest[0].Token;
        int cross = steps.FindIndex(s => s.Nearest[0].Token != first);
        sb.Append(inv, $"- **{kind}**: the nearest word is *{first}* ");
        sb.Append(cross < 0
            ? "all the way to the end. "
            : string.Create(inv, $"up to step {cross - 1} ({Deg(steps[cross - 1].Angle):F1}°) and *{steps[cross].Nearest[0].Token}* from step {cross} ({Deg(steps[cross].Angle):F1}°, t = {steps[cross].T:F3}) on. "));
        var words = steps.SelectMany(s => s.Nearest.Select(n => n.Token)).Distinct().ToList();
        sb.Append(inv, $"{words.Count} distinct words appear in the top {steps[0].Nearest.Length} along the path; at the end: {string.Join(", ", steps[^1].Nearest.Select(n => n.Token))}.");
        foreach (var (w, ids) in new[] { (fromWord, pa), (toWord, pb) })
            if (ids.Length > 1)
                sb.Append(kind == "static"
                    ? string.Create(inv, $" *{w}* is not one token ({Pieces(tok, ids)}): its static vector is the mean of its pieces' rows, which sits between the pieces rather than near a word of that meaning.")
                    : string.Create(inv, $" *{w}* is several tokens, so it is not among the candidates; the words nearest its contextual vector show what the encoder makes of it in this sentence."));
        return sb.ToString();
    }

    static void Table(StringBuilder sb, List<Step> steps)
    {
        sb.AppendLine("| step | t | angle from start | ‖x‖ | nearest words (cosine) |");
        sb.AppendLine("|---:|---:|---:|---:|---|");
        for (int i = 0; i < steps.Count; i++)
        {
            var s = steps[i];
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {i} | {s.T:F4} | {Deg(s.Angle):F2}° | {s.Norm:F4} | {Neighbours(s.Nearest)} |");
        }
    }
}
