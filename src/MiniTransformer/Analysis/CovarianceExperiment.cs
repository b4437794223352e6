namespace MiniTransformer.Analysis;

/// <summary>How well a map A → B predicts B on a set of held-out pairs.</summary>
/// <param name="Cosine">mean over pairs of cos(B̂, B)</param>
/// <param name="Mse">mean over pairs and dimensions of (B̂ − B)²</param>
/// <param name="ShiftCosine">mean over pairs of cos(B̂ − A, B − A): does the predicted change point the right way (NaN for the identity, which predicts no change)</param>
/// <param name="GapClosed">1 − Σ‖B̂ − B‖² / Σ‖A − B‖²: the fraction of the A-to-B distance the map removes (0 for the identity)</param>
public sealed record MapScore(string Method, int Pairs, double Cosine, double Mse, double ShiftCosine, double GapClosed);

/// <summary>
/// "General covariance" of contextual embeddings: is the change of a word's vector under a grammatical change
/// (present → past, singular → plural) one map, shared across words? Four maps A → B, each fitted on training words
/// and scored on held-out words (K-fold by word: every word is held out once, all its pairs with it):
/// <list type="bullet">
/// <item>identity: B̂ = A;</item>
/// <item>mean shift: B̂ = A + mean(B − A) over the training pairs;</item>
/// <item>ridge: B̂ = A + Wᵀ A + b, (W, b) by <see cref="Ridge"/> on the residual Δ = B − A (so a large λ shrinks it to
/// the mean shift), λ = λ_rel · mean diag(ÃᵀÃ) with λ_rel picked from a grid on validation words;</item>
/// <item>mlp: B̂ = A + MLP(A), <see cref="MlpRegressor"/> (one GELU hidden layer, trained by this engine's kernels and
/// AdamW) on the residual; the step count is early-stopped on validation words, then the net is retrained on all training words for that many steps.</item>
/// </list>
/// The validation words are a seeded fifth of each fold's training words (at least one); they never include test words.
/// </summary>
public static class CovarianceExperiment
{
    public static readonly string[] Methods = ["identity", "mean shift", "ridge", "mlp"];
    public static readonly double[] DefaultLambdas = [1e-3, 1e-2, 1e-1, 1, 10, 100, 1000];

    /// <summary>Out-of-fold predictions of every method for every pair, and what each fold chose.</summary>
    public sealed record Result(int[] Fold, IReadOnlyDictionary<string, double[][]> Predictions, double[] Lambda, int[] MlpBestStep);

    /// <summary>Distinct words in a seeded random order, dealt round-robin into <paramref name="folds"/> folds; per pair its fold.</summary>
    public static int[] WordFolds(IReadOnlyList<string> words, int folds, int seed)
    {
        var distinct = words.Distinct().OrderBy(w => w, StringComparer.Ordinal).ToArray();
        if (folds < 2 || folds > distinct.Length) throw new ArgumentException($"folds must be in 2..{distinct.Length} (got {folds})");
        Shuffle(distinct, new Random(seed));
        var fold = new Dictionary<string, int>();
        for (int i = 0; i < distinct.Length; i++) fold[distinct[i]] = i % folds;
        return [.. words.Select(w => fold[w])];
    }

    static void Shuffle<T>(T[] a, Random rng)
    {
        for (int i = a.Length - 1; i > 0; i--) { int j = rng.Next(i + 1); (a[i], a[j]) = (a[j], a[i]); }
    }

    public static Result CrossValidate(double[][] a, double[][] b, IReadOnlyList<string> words, int folds, int seed,
        MlpTrainConfig mlp, double[]? lambdas = null, Action<string>? log = null)
    {
        int n = a.Length;
        if (b.Length != n || words.Count != n) throw new ArgumentException("a, b and words must have one entry per pair");
        lambdas ??= DefaultLambdas;
        int d = a[0].Length;
        var fold = WordFolds(words, folds, seed);
        var delta = new double[n][];
        for (int i = 0; i < n; i++) { delta[i] = new double[d]; for (int j = 0; j < d; j++) delta[i][j] = b[i][j] - a[i][j]; }
        var preds = Methods.ToDictionary(m => m, _ => new double[n][]);
        var chosenLambda = new double[folds];
        var bestStep = new int[folds];
        var rng = new Random(seed + 1);
        for (int k = 0; k < folds; k++)
        {
            var test = Enumerable.Range(0, n).Where(i => fold[i] == k).ToArray();
            var train = Enumerable.Range(0, n).Where(i => fold[i] != k).ToArray();
            // Validation words: a seeded fifth of the training words.
            var trainWords = train.Select(i => words[i]).Distinct().OrderBy(w => w, StringComparer.Ordinal).ToArray();
            Shuffle(trainWords, rng);
            var valWords = trainWords.Take(Math.Max(1, trainWords.Length / 5)).ToHashSet();
            var fit = train.Where(i => !valWords.Contains(words[i])).ToArray();
            var val = train.Where(i => valWords.Contains(words[i])).ToArray();

            var meanShift = new double[d];
            foreach (int i in train) for (int j = 0; j < d; j++) meanShift[j] += delta[i][j] / train.Length;

            // Ridge on the residual: λ_rel by validation MSE, then refitted on all training pairs.
            double bestL = lambdas[0], bestMse = double.PositiveInfinity;
            foreach (double lr in lambdas)
            {
                var xa = fit.Select(i => a[i]).ToArray();
                var r = Ridge.Fit(xa, [.. fit.Select(i => delta[i])], lr * Ridge.GramScale(xa));
                double mse = val.Average(i => SquaredError(Add(a[i], r.Predict(a[i])), b[i]) / d);
                if (mse < bestMse) { bestMse = mse; bestL = lr; }
            }
            chosenLambda[k] = bestL;
            var trA = train.Select(i => a[i]).ToArray();
            var ridge = Ridge.Fit(trA, [.. train.Select(i => delta[i])], bestL * Ridge.GramScale(trA));

            // MLP on the residual, early-stopped on the validation words.
            var probe = new MlpRegressor(d, mlp.Hidden, d, mlp.Seed + k);
            probe.Train([.. fit.Select(i => a[i])], [.. fit.Select(i => delta[i])], mlp, [.. val.Select(i => a[i])], [.. val.Select(i => delta[i])]);
            bestStep[k] = probe.BestStep;
            // Refitted on all training words for the step count the validation words chose (as ridge is refitted).
            var net = new MlpRegressor(d, mlp.Hidden, d, mlp.Seed + k);
            net.Train(trA, [.. train.Select(i => delta[i])], mlp with { Steps = probe.BestStep });
            var mlpDelta = net.Predict([.. test.Select(i => a[i])]);

            for (int t = 0; t < test.Length; t++)
            {
                int i = test[t];
                preds["identity"][i] = (double[])a[i].Clone();
                preds["mean shift"][i] = Add(a[i], meanShift);
                preds["ridge"][i] = Add(a[i], ridge.Predict(a[i]));
                preds["mlp"][i] = Add(a[i], mlpDelta[t]);
            }
            log?.Invoke($"fold {k + 1}/{folds}: {test.Length} test pairs ({test.Select(i => words[i]).Distinct().Count()} words), ridge λ_rel {bestL:g3}, mlp best step {probe.BestStep}");
        }
        return new Result(fold, preds, chosenLambda, bestStep);
    }

    public static MapScore Score(string method, double[][] a, double[][] b, double[][] pred, IEnumerable<int> rows)
    {
        var r = rows.ToArray();
        if (r.Length == 0) throw new ArgumentException("no pairs to score");
        int d = a[0].Length;
        double cos = 0, se = 0, gap = 0, shift = 0;
        foreach (int i in r)
        {
            cos += Geodesic.Cosine(pred[i], b[i]);
            se += SquaredError(pred[i], b[i]);
            gap += SquaredError(a[i], b[i]);
            var dp = Sub(pred[i], a[i]);
            shift += Geodesic.Norm(dp) > 0 ? Geodesic.Cosine(dp, Sub(b[i], a[i])) : double.NaN;
        }
        return new MapScore(method, r.Length, cos / r.Length, se / (r.Length * d), shift / r.Length, 1 - se / gap);
    }

    static double SquaredError(double[] x, double[] y)
    {
        double s = 0;
        for (int j = 0; j < x.Length; j++) s += (x[j] - y[j]) * (x[j] - y[j]);
        return s;
    }

    static double[] Add(double[] x, double[] y) { var r = new double[x.Length]; for (int j = 0; j < r.Length; j++) r[j] = x[j] + y[j]; return r; }
    static double[] Sub(double[] x, double[] y) { var r = new double[x.Length]; for (int j = 0; j < r.Length; j++) r[j] = x[j] - y[j]; return r; }
}
