using System.CommandLine;
using System.Numerics;
using MiniTransformer.Backends;
using MiniTransformer.Models;
using MiniTransformer.Training;

namespace MiniTransformer.Cli.Commands;

/// <summary>The symmetry-breaking and optimizer flags of <c>mt train</c> (arXiv 2601.22257): b_Q / b_V, PReLU, sgdm, ECD.</summary>
sealed class SymmetryOptions
{
    public Option<string> Breaking { get; } = new("--symmetry-breaking") { Description = "none | bq | bv | bq,bv: stochastic unlearned attention biases q ← q + b_Q, v ← v + b_V (resampled each training forward, their means at eval)", DefaultValueFactory = _ => "none" };
    public Option<double> BqMean { get; } = new("--bq-mean") { Description = "mean of b_Q (every component)", DefaultValueFactory = _ => 0.5 };
    public Option<double?> BqStd { get; } = new("--bq-std") { Description = "std of b_Q (every component; default linspace(0.05, 0.15, d_h))" };
    public Option<double> BvMean { get; } = new("--bv-mean") { Description = "mean of b_V", DefaultValueFactory = _ => 0.5 };
    public Option<double> BvStd { get; } = new("--bv-std") { Description = "std of b_V", DefaultValueFactory = _ => 0.05 };
    public Option<string> Mlp { get; } = new("--mlp") { Description = "gelu | prelu (learnable per-feature negative slopes, init N(0.2, 1))", DefaultValueFactory = _ => "gelu" };
    public Option<double> Momentum { get; } = new("--momentum") { Description = "sgdm: momentum (Nesterov)", DefaultValueFactory = _ => 0.95 };
    public Option<double> EcdEta { get; } = new("--ecd-eta") { Description = "ecd: η (Δt = lr/√η)", DefaultValueFactory = _ => 100 };
    public Option<double> EcdF0 { get; } = new("--ecd-f0") { Description = "ecd: F₀, must lie below the lowest reachable loss (steps with F − F₀ ≤ 0 are skipped)", DefaultValueFactory = _ => 2.0 };
    public Option<double> EcdNu { get; } = new("--ecd-nu") { Description = "ecd: ν, bounce noise", DefaultValueFactory = _ => 0 };

    public void AddTo(Command cmd)
    {
        foreach (Option o in new Option[] { Breaking, BqMean, BqStd, BvMean, BvStd, Mlp, Momentum, EcdEta, EcdF0, EcdNu }) cmd.Options.Add(o);
    }

    public static OptimizerKind Kind(string s) => s switch
    {
        "adamw" => OptimizerKind.AdamW,
        "sgd" => OptimizerKind.Sgd,
        "sgdm" => OptimizerKind.Sgdm,
        "ecd" => OptimizerKind.Ecd,
        _ => throw new InputException($"--optimizer: unknown optimizer '{s}'; expected adamw, sgd, sgdm or ecd"),
    };

    /// <summary>The paper's peak rates when --lr is not given: ecd 1.0, sgdm 0.03; else the flag's.</summary>
    public static double LearningRate(ParseResult r, Option<double> lr, OptimizerKind kind) =>
        r.GetResult(lr) is { Implicit: false } ? r.GetValue(lr) : kind switch { OptimizerKind.Ecd => 1.0, OptimizerKind.Sgdm => 0.03, _ => r.GetValue(lr) };

    public OptimizerConfig Apply(ParseResult r, OptimizerConfig c) => c with
    {
        Momentum = r.GetValue(Momentum), EcdEta = r.GetValue(EcdEta), EcdF0 = r.GetValue(EcdF0), EcdNu = r.GetValue(EcdNu),
    };

    public (bool Bq, bool Bv) Which(ParseResult r)
    {
        bool bq = false, bv = false;
        foreach (var part in r.GetValue(Breaking)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            switch (part)
            {
                case "bq": bq = true; break;
                case "bv": bv = true; break;
                case "none": break;
                default: throw new InputException($"--symmetry-breaking: unknown '{part}'; expected none, bq, bv or bq,bv");
            }
        return (bq, bv);
    }

    public bool Requested(ParseResult r) => Which(r) is (true, _) or (_, true) || r.GetValue(Mlp) != "gelu";

    /// <summary>The flags' symmetry-breaking settings on a GPT-2 config.</summary>
    public Gpt2Config ApplyTo(ParseResult r, Gpt2Config cfg)
    {
        var (sb, act) = Settings(r, cfg.HeadDim);
        return cfg with { SymmetryBreaking = sb, MlpActivation = act };
    }

    /// <summary>The flags' symmetry-breaking settings on a BERT config (the same b_Q / b_V after the projections, PReLU in the MLP).</summary>
    public BertConfig ApplyTo(ParseResult r, BertConfig cfg)
    {
        var (sb, act) = Settings(r, cfg.HeadDim);
        return cfg with { SymmetryBreaking = sb, MlpActivation = act };
    }

    (SymmetryBreakingConfig? Sb, MlpActivation Act) Settings(ParseResult r, int headDim)
    {
        var (bq, bv) = Which(r);
        var act = r.GetValue(Mlp) switch
        {
            "gelu" => MlpActivation.Gelu,
            "prelu" => MlpActivation.Prelu,
            var m => throw new InputException($"--mlp: unknown '{m}'; expected gelu or prelu"),
        };
        var sb = bq || bv ? SymmetryBreakingConfig.Create(headDim, bq, bv, r.GetValue(BqMean), r.GetValue(BqStd), r.GetValue(BvMean), r.GetValue(BvStd)) : null;
        sb?.Validate("--symmetry-breaking", headDim);
        return (sb, act);
    }
}
