using MiniTransformer.Analysis;

namespace MiniTransformer.Tests.Analysis;

public sealed class CovarianceTests
{
    static double[][] Gaussian(Random r, int n, int d) =>
        [.. Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, d).Select(_ => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble())).ToArray())];

    static double Mse(double[][] p, double[][] y) => p.Zip(y).Average(z => z.First.Zip(z.Second).Average(v => (v.First - v.Second) * (v.First - v.Second)));

    [Fact]
    public void Untrained_mlp_predicts_the_training_mean()
    {
        var r = new Random(2);
        var x = Gaussian(r, 20, 3);
        var y = Gaussian(r, 20, 2);
        var net = new MlpRegressor(3, 8, 2, seed: 1);
        net.Train(x, y, new MlpTrainConfig(Hidden: 8, Steps: 1, LearningRate: 0, WeightDecay: 0));   // lr 0: parameters stay at their init (W₂ = 0)
        var p = net.Predict(Gaussian(r, 5, 3));
        for (int j = 0; j < 2; j++)
            foreach (var row in p) Assert.Equal(y.Average(v => v[j]), row[j], 1e-6);
    }

    [Fact]
    public void Mlp_trained_by_the_engine_fits_a_known_nonlinear_map_and_generalises()
    {
        // y = (x₀·x₁, |x₂| − 0.8, sin x₃): no linear map fits it (ridge's test MSE stays near the variance).
        var r = new Random(4);
        double[] F(double[] x) => [x[0] * x[1], Math.Abs(x[2]) - 0.8, Math.Sin(x[3])];
        var xTr = Gaussian(r, 400, 4); var yTr = xTr.Select(F).ToArray();
        var xTe = Gaussian(r, 200, 4); var yTe = xTe.Select(F).ToArray();
        var net = new MlpRegressor(4, 64, 3, seed: 1);
        double trainLoss = net.Train(xTr, yTr, new MlpTrainConfig(Hidden: 64, Steps: 600, LearningRate: 1e-2, WeightDecay: 0));
        double mlpMse = Mse(net.Predict(xTe), yTe);
        var ridge = Ridge.Fit(xTr, yTr, 1e-6);
        double ridgeMse = Mse([.. xTe.Select(ridge.Predict)], yTe);
        double meanMse = Mse([.. xTe.Select(_ => Enumerable.Range(0, 3).Select(j => yTr.Average(v => v[j])).ToArray())], yTe);
        Assert.True(trainLoss < 0.05, $"standardised train MSE {trainLoss}");
        Assert.True(mlpMse < 0.15 * meanMse, $"MLP test MSE {mlpMse} vs predicting the mean {meanMse}");
        Assert.True(mlpMse < 0.25 * ridgeMse, $"MLP test MSE {mlpMse} vs ridge {ridgeMse}");
    }

    [Fact]
    public void Early_stopping_keeps_the_parameters_of_the_best_validation_step()
    {
        var r = new Random(8);
        var x = Gaussian(r, 30, 6); var y = Gaussian(r, 30, 2);          // pure noise: validation loss rises as it overfits
        var xv = Gaussian(r, 30, 6); var yv = Gaussian(r, 30, 2);
        var net = new MlpRegressor(6, 64, 2, seed: 3);
        net.Train(x, y, new MlpTrainConfig(Hidden: 64, Steps: 200, LearningRate: 1e-2, WeightDecay: 0, EvalEvery: 5), xv, yv);
        Assert.True(net.BestStep < 200, $"best step {net.BestStep}");
        Assert.Equal(0, net.BestStep % 5);
        // The kept parameters are those of the best step: their validation MSE, in the standardised units
        // (divided by s_y², the training targets' mean squared deviation), is the recorded best validation loss.
        double s2 = Enumerable.Range(0, 2).Sum(j => { double m = y.Average(v => v[j]); return y.Sum(v => (v[j] - m) * (v[j] - m)); }) / (30 * 2);
        Assert.Equal(net.ValLoss, Mse(net.Predict(xv), yv) / s2, 1e-4);
    }

    [Fact]
    public void Word_folds_keep_each_word_in_one_fold_and_balance_the_folds()
    {
        var words = Enumerable.Range(0, 10).SelectMany(w => Enumerable.Repeat($"w{w}", 3)).ToArray();
        var f = CovarianceExperiment.WordFolds(words, 4, seed: 1);
        foreach (var g in words.Select((w, i) => (w, f[i])).GroupBy(t => t.w)) Assert.Single(g.Select(t => t.Item2).Distinct());
        var sizes = Enumerable.Range(0, 4).Select(k => words.Where((_, i) => f[i] == k).Distinct().Count()).ToArray();
        Assert.Equal(10, sizes.Sum());
        Assert.True(sizes.Max() - sizes.Min() <= 1);
        Assert.Equal(f, CovarianceExperiment.WordFolds(words, 4, seed: 1));
        Assert.Throws<ArgumentException>(() => CovarianceExperiment.WordFolds(words, 11, 1));
    }

    [Fact]
    public void Cross_validation_scores_each_map_where_it_is_exact()
    {
        var r = new Random(9);
        int d = 6, nWords = 12, per = 5;
        var words = Enumerable.Range(0, nWords).SelectMany(w => Enumerable.Repeat($"w{w}", per)).ToArray();
        var a = Gaussian(r, words.Length, d);
        var shift = Enumerable.Range(0, d).Select(j => 0.5 + 0.1 * j).ToArray();
        // Constant shift: the mean shift and ridge close the whole gap.
        var bShift = a.Select(x => x.Select((v, j) => v + shift[j]).ToArray()).ToArray();
        var mlp = new MlpTrainConfig(Hidden: 8, Steps: 20, LearningRate: 1e-3, Seed: 1);
        var res = CovarianceExperiment.CrossValidate(a, bShift, words, 3, 1, mlp, [1e-6, 1]);
        var all = Enumerable.Range(0, a.Length).ToArray();
        var id = CovarianceExperiment.Score("identity", a, bShift, res.Predictions["identity"], all);
        Assert.Equal(0, id.GapClosed, 1e-12);
        Assert.True(double.IsNaN(id.ShiftCosine));
        Assert.Equal(1, CovarianceExperiment.Score("mean shift", a, bShift, res.Predictions["mean shift"], all).GapClosed, 1e-12);
        Assert.Equal(1, CovarianceExperiment.Score("ridge", a, bShift, res.Predictions["ridge"], all).GapClosed, 1e-6);
        // A linear map: ridge is exact, the mean shift is not.
        var bLin = a.Select(x => x.Select((v, j) => v + 0.8 * x[(j + 1) % d] - 0.3 * v + shift[j]).ToArray()).ToArray();
        res = CovarianceExperiment.CrossValidate(a, bLin, words, 3, 1, mlp, [1e-8]);
        Assert.Equal(1, CovarianceExperiment.Score("ridge", a, bLin, res.Predictions["ridge"], all).GapClosed, 1e-6);
        // The mean shift removes only the constant part: Σ shift² = 3.55 of a gap of ≈ 3.55 + 6·(0.8² + 0.3²) = 7.93 per pair (≈ 0.45).
        Assert.InRange(CovarianceExperiment.Score("mean shift", a, bLin, res.Predictions["mean shift"], all).GapClosed, 0.3, 0.55);
        Assert.Equal(3, res.Lambda.Length);
        Assert.All(res.MlpBestStep, s => Assert.InRange(s, 1, 20));
    }
}
