using System.Numerics;
using MiniTransformer.Tensors;

namespace MiniTransformer.Models;

/// <summary>A named trainable tensor in its checkpoint layout, with its gradient (allocated on first use).</summary>
public sealed class Parameter<F>(string name, Tensor<F> value) where F : unmanaged, IFloatingPointIeee754<F>
{
    Tensor<F>? grad;

    /// <summary>Hugging Face name, as written in checkpoints (e.g. <c>h.0.attn.c_attn.weight</c>).</summary>
    public string Name { get; } = name;
    public Tensor<F> Value { get; } = value;
    public Tensor<F> Grad => grad ??= new Tensor<F>(Value.Shape);
    public bool HasGrad => grad is not null;

    /// <summary>nanoGPT's rule: matrices and embeddings decay, biases and LayerNorm parameters do not.</summary>
    public bool Decays => Value.Rank >= 2;

    public override string ToString() => $"{Name} [{string.Join(", ", Value.Shape)}]";
}

/// <summary>What the trainer and the command line need from any model (GPT-2 now, BERT later).</summary>
public interface ILanguageModel<F> where F : unmanaged, IFloatingPointIeee754<F>
{
    /// <summary>Hugging Face model_type: "gpt2" (or "bert").</summary>
    string Arch { get; }
    int VocabSize { get; }
    /// <summary>The Hugging Face config.json of this model.</summary>
    string ConfigJson { get; }
    /// <summary>One line for logs: architecture and sizes.</summary>
    string Describe();
    int MaxSequence { get; }
    IReadOnlyList<Parameter<F>> Parameters { get; }

    /// <summary>Logits [B,T,V] of the last forward.</summary>
    Tensor<F> Logits { get; }

    /// <summary>
    /// Runs the model on ids [B,T]; with targets (aligned, −100 ignored) also the loss.
    /// Returns (Σ loss over scored positions, their count); (0, 0) without targets.
    /// </summary>
    (double LossSum, int Count) Forward(int[] ids, int[]? targets, int B, int T);

    /// <summary>Accumulates ∂(scale · Σ loss)/∂θ into every parameter's Grad (targets of the last forward).</summary>
    void Backward(double scale);
}
