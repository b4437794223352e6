using System.Text.Json.Nodes;

namespace MiniTransformer.Gauge;

/// <summary>
/// A model in canonical (gauge-fixed) form: the parameters, every fixed entry (tensor → flat row-major index in the
/// stored layout → value), the kinds removed with their analytic counts, and the per-head pivot rows of the identity
/// blocks in W_Q and W_V (what the skip kernels use).
/// </summary>
public sealed class CanonicalForm
{
    public required ParamSet Params { get; init; }
    public required SortedDictionary<string, SortedDictionary<int, double>> Fixed { get; init; }
    /// <summary>Kind → number of fixed entries it accounts for (= the kind's analytic count).</summary>
    public required Dictionary<string, int> Removed { get; init; }
    /// <summary>[layer][head] → the d_h pivot rows (ascending) where W_Q^h is the identity: row Pivots[k] = e_k.</summary>
    public required int[][][] QPivots { get; init; }
    public required int[][][] VPivots { get; init; }
    /// <summary>Kinds the toolkit counts that fixed entries do not remove here (and why).</summary>
    public required Dictionary<string, string> NotRemoved { get; init; }

    /// <summary>"gpt2" or "bert": BERT's packed attention.self.qkv is written to gauge.json as query/key/value (the file's tensors).</summary>
    public string Arch { get; init; } = "gpt2";
    /// <summary>Model width d (the size of each of BERT's query/key/value blocks).</summary>
    public int D { get; init; }

    public int FixedCount => Fixed.Values.Sum(t => t.Count);

    static readonly System.Text.RegularExpressions.Regex PackedQkv = new(@"^(.*\.attention\.self)\.qkv\.(weight|bias)$");
    static readonly System.Text.RegularExpressions.Regex SplitQkv = new(@"^(.*\.attention\.self)\.(query|key|value)\.(weight|bias)$");

    /// <summary>
    /// The fixed entries under the names and flat indices of the stored file: BERT's packed qkv ([q | k | v] rows of
    /// [3d, d], bias [3d]) split into query, key and value ([d, d] and [d] each).
    /// </summary>
    public SortedDictionary<string, SortedDictionary<int, double>> FileEntries()
    {
        var res = new SortedDictionary<string, SortedDictionary<int, double>>(StringComparer.Ordinal);
        foreach (var (t, e) in Fixed)
        {
            if (Arch != "bert" || PackedQkv.Match(t) is not { Success: true } m) { res[t] = e; continue; }
            int part = m.Groups[2].Value == "weight" ? D * D : D;
            string[] names = ["query", "key", "value"];
            foreach (var (i, v) in e)
            {
                string name = $"{m.Groups[1].Value}.{names[i / part]}.{m.Groups[2].Value}";
                if (!res.TryGetValue(name, out var d)) res[name] = d = [];
                d[i % part] = v;
            }
        }
        return res;
    }
    public int FreeCount => Params.Count - FixedCount;

    /// <summary>gauge.json: {"fixed": [{tensor, indices, values}], "removed": {kind: count}, ...}.</summary>
    public JsonObject ToJson()
    {
        var fixedArr = new JsonArray();
        foreach (var (t, e) in FileEntries())
            fixedArr.Add(new JsonObject
            {
                ["tensor"] = t,
                ["indices"] = new JsonArray([.. e.Keys.Select(k => (JsonNode)JsonValue.Create(k))]),
                ["values"] = new JsonArray([.. e.Values.Select(v => (JsonNode)JsonValue.Create(v))]),
            });
        var removed = new JsonObject();
        foreach (var (k, v) in Removed) removed[k] = v;
        var not = new JsonObject();
        foreach (var (k, v) in NotRemoved) not[k] = v;
        JsonArray Piv(int[][][] p) => new([.. p.Select(l => (JsonNode)new JsonArray([.. l.Select(h => (JsonNode)new JsonArray([.. h.Select(r => (JsonNode)JsonValue.Create(r))]))]))]);
        return new JsonObject
        {
            ["fixed"] = fixedArr,
            ["removed"] = removed,
            ["not_removed"] = not,
            ["fixed_count"] = FixedCount,
            ["parameters"] = Params.Count,
            ["free_parameters"] = FreeCount,
            ["arch"] = Arch,
            ["hidden_size"] = D,
            ["q_pivots"] = Piv(QPivots),
            ["v_pivots"] = Piv(VPivots),
        };
    }

    /// <summary>Reads the fixed entries and pivots back from gauge.json (for training a fixed model).</summary>
    public static (SortedDictionary<string, SortedDictionary<int, double>> Fixed, int[][][] Q, int[][][] V) ReadJson(JsonObject o)
    {
        var f = new SortedDictionary<string, SortedDictionary<int, double>>(StringComparer.Ordinal);
        int D = o["hidden_size"] is JsonNode hs ? (int)hs : 0;
        foreach (var e in o["fixed"]!.AsArray())
        {
            var idx = e!["indices"]!.AsArray().Select(x => (int)x!).ToArray();
            var val = e["values"]!.AsArray().Select(x => (double)x!).ToArray();
            string name = (string)e["tensor"]!;
            int offset = 0;
            // BERT's query/key/value as stored → the engine's packed qkv ([q | k | v]).
            if (SplitQkv.Match(name) is { Success: true } m)
            {
                int part = m.Groups[3].Value == "weight" ? D * D : D;
                offset = part * (m.Groups[2].Value switch { "query" => 0, "key" => 1, _ => 2 });
                name = $"{m.Groups[1].Value}.qkv.{m.Groups[3].Value}";
            }
            if (!f.TryGetValue(name, out var d)) f[name] = d = [];
            for (int i = 0; i < idx.Length; i++) d[offset + idx[i]] = val[i];
        }
        int[][][] Piv(string key) => [.. o[key]!.AsArray().Select(l => l!.AsArray().Select(h => h!.AsArray().Select(r => (int)r!).ToArray()).ToArray())];
        return (f, Piv("q_pivots"), Piv("v_pivots"));
    }
}

/// <summary>
/// Gauge fixing by fixed entries (GPT-2). In order, each step fixes as many entries as its kind's analytic count:
/// <list type="number">
/// <item>lngain: every foldable LayerNorm's gain → 1 (W → diag(g)·W, b → b/g);</item>
/// <item>lnbias: its bias → 0 (c → c + b·W); a bias-free reader (the untied lm_head) takes b → e_{d−1} and
/// W → W + 1·((b − e_{d−1})·W) (its normalised input is orthogonal to 1);</item>
/// <item>lnmean: row 0 of each reader with a bias → 0 (W → W + outer(1, u), u = −W[0,:]);</item>
/// <item>qk: per head, pivot rows P (greedy pivoting on an orthonormal basis of W_Q^h's columns, so the choice is
/// itself gauge invariant; row 0 excluded): A = (W_Q^h[P,:])⁻¹, W̃_Q^h → W̃_Q^h·A (W_Q^h[P,:] = I), W̃_K^h → W̃_K^h·A⁻ᵀ;</item>
/// <item>kbias: b_K → 0; ov: the same on W_V^h (W_O^h → W_V^h[P,:]·W_O^h); vbias: b_O += b_V·W_O, b_V → 0;</item>
/// <item>writer1 (every layer with ≥ 2 heads): column 0 of each residual writer and its bias → 0; untied: lm_head's
/// row for token 0 → 0;</item>
/// <item>embshift: wte row 0 → 0 (wpe absorbs it), wpe column 0 → 0; untied also wte column 0 → 0.</item>
/// </list>
/// Not removed: residual (a rotation, no fixed entries), mlp (a discrete permutation, 0 flat directions).
/// </summary>
public static class Canonical
{
    sealed class Builder(ParamSet p)
    {
        public readonly SortedDictionary<string, SortedDictionary<int, double>> Fixed = new(StringComparer.Ordinal);
        public readonly Dictionary<string, int> ByKind = [];
        public void Mark(string kind, string tensor, int index, double value)
        {
            if (!Fixed.TryGetValue(tensor, out var t)) Fixed[tensor] = t = [];
            if (!t.TryAdd(index, value)) throw new InvalidOperationException($"gauge fix: {tensor}[{index}] fixed twice");
            p[tensor][index] = value;
            ByKind[kind] = ByKind.GetValueOrDefault(kind) + 1;
        }
        public void Mark(string kind, MapRef m, int i, int j, double value) => Mark(kind, m.Weight, m.Index(i, j), value);
        public void MarkBias(string kind, MapRef m, int j, double value) => Mark(kind, m.Bias!, m.Col0 + j, value);
    }

    public static CanonicalForm Fix(GaugeArch a, ParamSet input, bool sharedPivots = true)
    {
        if (a.Arch == "bert") return FixBert(a, input, sharedPivots);
        if (a.Arch != "gpt2") throw new InputException($"gauge fix: architecture '{a.Arch}' is not supported (GPT-2 and BERT)");
        var p = input.Clone();
        var b = new Builder(p);
        int d = a.D;

        // lngain, lnbias
        foreach (var ln in a.FoldableLns)
        {
            var g = p[ln.Gain]; var beta = p[ln.Bias];
            foreach (var r in ln.Readers)
                for (int i = 0; i < d; i++) for (int j = 0; j < r.Cols; j++) r.Set(p, i, j, r.Get(p, i, j) * g[i]);
            for (int i = 0; i < d; i++) beta[i] /= g[i];
            for (int i = 0; i < d; i++) b.Mark("lngain", ln.Gain, i, 1.0);
            foreach (var r in ln.Readers)
            {
                if (r.HasBias)
                {
                    var shift = VecTimes(p, r, beta);
                    for (int j = 0; j < r.Cols; j++) r.AddBias(p, j, shift[j]);
                }
                else
                {
                    var delta = (double[])beta.Clone();
                    delta[d - 1] -= 1;
                    var u = VecTimes(p, r, delta);
                    for (int i = 0; i < d; i++) for (int j = 0; j < r.Cols; j++) r.Add(p, i, j, u[j]);
                }
            }
            bool biasFree = ln.Readers.Any(r => !r.HasBias);
            for (int i = 0; i < d; i++) b.Mark("lnbias", ln.Bias, i, biasFree && i == d - 1 ? 1.0 : 0.0);
        }
        // lnmean: g = 1, b = 0 now, so W → W + outer(1, u) alone. Not with a single-head layer: its d×d identity block
        // in W_Q needs every row (row 0 would be zero).
        bool singleHead = a.Attention.Any(s => s.Heads == 1);
        foreach (var ln in singleHead ? [] : a.MeanLns)
            foreach (var r in ln.Readers.Where(r => r.HasBias))
            {
                var u = Row(p, r, 0);
                for (int i = 0; i < d; i++) for (int j = 0; j < r.Cols; j++) r.Add(p, i, j, -u[j]);
                for (int j = 0; j < r.Cols; j++) b.Mark("lnmean", r, 0, j, 0.0);
            }
        bool meanRow0 = !singleHead && a.MeanLns.Any(ln => ln.Readers.Any(r => r.HasBias));

        var (qPiv, vPiv) = FixAttention(a, p, b, meanRow0, sharedPivots);

        var notRemoved = new Dictionary<string, string>
        {
            ["residual"] = "a rotation: no fixed entries remove it",
            ["mlp"] = "a discrete permutation (no flat directions, no entries): hidden units ordered by the norm of their c_fc column and bias instead",
        };
        if (singleHead) notRemoved["lnmean"] = "kept: a single-head layer's d×d identity block in W_Q leaves no row to zero";
        // writer1: needs every attention block to have ≥ 2 heads (else one of its directions is already removed by ov/vbias/lnmean).
        if (!singleHead)
        {
            IEnumerable<MapRef> maps = a.Tied ? a.ResidualWriters : [.. a.ResidualWriters, a.OutputMap];
            foreach (var m in maps)
            {
                for (int i = 0; i < m.In; i++)
                {
                    double w0 = m.Get(p, i, 0);
                    for (int j = 0; j < m.Cols; j++) m.Add(p, i, j, -w0);
                    b.Mark("writer1", m, i, 0, 0.0);
                }
                if (m.HasBias)
                {
                    double c0 = m.GetBias(p, 0);
                    for (int j = 0; j < m.Cols; j++) m.AddBias(p, j, -c0);
                    b.MarkBias("writer1", m, 0, 0.0);
                }
            }
        }
        else notRemoved["writer1"] = "kept: a single-head layer shares one of its directions with ov, vbias and lnmean";

        // embshift
        {
            var E = p[a.TokenEmbedding]; var P = p[a.PositionEmbedding];
            var w = new double[d];
            Array.Copy(E, 0, w, 0, d);
            for (int v = 0; v < a.Vocab; v++) for (int i = 0; i < d; i++) E[v * d + i] -= w[i];
            for (int t = 0; t < a.Positions; t++) for (int i = 0; i < d; i++) P[t * d + i] += w[i];
            for (int i = 0; i < d; i++) b.Mark("embshift", a.TokenEmbedding, i, 0.0);
            for (int t = 0; t < a.Positions; t++)
            {
                double c = P[t * d];
                for (int i = 0; i < d; i++) P[t * d + i] -= c;
                b.Mark("embshift", a.PositionEmbedding, t * d, 0.0);
            }
            if (!a.Tied)
                for (int v = 1; v < a.Vocab; v++)
                {
                    double c = E[v * d];
                    for (int i = 0; i < d; i++) E[v * d + i] -= c;
                    b.Mark("embshift", a.TokenEmbedding, v * d, 0.0);
                }
        }

        // mlp: order each MLP's hidden units by the norm of their c_fc column and bias (a permutation: moves no fixed entry, since row 0 of
        // c_fc and column 0 of c_proj are fixed as wholes).
        SortMlpUnits(a, p);

        // Exact values at every fixed entry (later steps keep them up to round-off).
        foreach (var (t, e) in b.Fixed) foreach (var (i, v) in e) p[t][i] = v;
        CheckCounts(a, b);
        return new CanonicalForm { Params = p, Fixed = b.Fixed, Removed = b.ByKind, QPivots = qPiv, VPivots = vPiv, NotRemoved = notRemoved, D = d };
    }

    /// <summary>Each kind fixed exactly its analytic count of entries (a wrong count is a bug, not bad input).</summary>
    static void CheckCounts(GaugeArch a, Builder b)
    {
        foreach (var (kind, n) in b.ByKind)
        {
            int expect = GaugeKind.All.First(x => x.Name == kind).Count(a);
            if (n != expect) throw new InvalidOperationException($"gauge fix: {kind} fixed {n} entries, its analytic count is {expect}");
        }
    }

    /// <summary>
    /// BERT (post-LN; with its MLM head, or encoder-only: see below) in canonical form. Post-LN changes which LayerNorm parameters can be folded:
    /// <code>
    ///   x′ = LN_out(h + MLP(h)),  h = LN_attn(x + Attn(x)),  LN(z) = n(z)⊙g + β,  n(z) ⊥ 1
    /// </code>
    /// Every LayerNorm but the last encoder one feeds a sublayer AND the skip path, so the skip path carries n⊙g + β
    /// itself into the next sum: its gain cannot be folded into the sublayer's input map (the skip would see the change),
    /// and its bias can only be moved if the sublayer's output bias puts it back — y + Sub(y) with y → y − β,
    /// c_in → c_in + β·W_in (the sublayer sees the same pre-activations) and b_out → b_out + β (the sum is unchanged).
    /// That is `postln`: β → 0 for the embedding LayerNorm, every LN_attn and every LN_out but the last. Only the last
    /// LN_out feeds linear maps alone (the head's dense, and the pooler when there is one): its gain → 1 and bias → 0
    /// fold into them (`lngain`, `lnbias`, as in GPT-2). The head LayerNorm feeds the decoder: untied, it folds the same
    /// way; tied (decoder = the word embeddings, also the input), only its bias moves, into the decoder bias
    /// (b_dec += β·Eᵀ), and b_dec's shift along 1_V is fixed by b_dec[0] = 0 (both `postln`). The mean direction
    /// (`lnmean`) needs only n ⊥ 1, so it is fixed (row 0 of every reader with a bias zeroed) for every LayerNorm,
    /// with its gain kept: W → W + outer(1/g, u), u = −g₀·W[0,:] (β = 0 by then, so no bias change). Then qk/ov/kbias/vbias
    /// as in GPT-2, `writer1` (column 0 of every sublayer output map and its bias: the next LayerNorm removes 1), and
    /// `embshift` over three tables (E row 0 and S row 0 into P, P[:,0], S[s≥1,0]; untied also E[v≥1,0]).
    /// There is no residual rotation in post-LN. The pooler (not in the MLM logits) takes the last LN_out's gain and
    /// bias too, so its output is kept as well.
    /// <para>
    /// Encoder-only (no MLM head, <see cref="GaugeArch.EncoderOnly"/>): the last LN_out's output x_L is itself the
    /// observable, so its gain and bias stay (no `lngain`, `lnbias`, no head folds). The same steps otherwise: `postln`
    /// on every other LayerNorm; `lnmean` on their readers and on the pooler's dense (which reads x_L at token 0), with
    /// the last LayerNorm's bias kept: W → W + outer(1/g, u), c → c − (β·(1/g))·u, u = −g₀·W[0,:] (x_L·outer(1/g, u) =
    /// (β·(1/g))·u because n ⊥ 1, so the pooler's pre-activation is unchanged); qk/ov/kbias/vbias; `writer1` on the
    /// sublayer output maps alone (no output map); `embshift` with E[v≥1, 0] as well (the token table is an input only:
    /// V − 1 more entries, as for an untied decoder).
    /// </para>
    /// </summary>
    static CanonicalForm FixBert(GaugeArch a, ParamSet input, bool sharedPivots)
    {
        if (a.FoldableLns.Length == 0 && !a.EncoderOnly)
            throw new InvalidOperationException("gauge fix: a BERT with an MLM head has a foldable last LayerNorm");
        var p = input.Clone();
        var b = new Builder(p);
        int d = a.D;
        const string dense = "cls.predictions.transform.dense.weight";
        MapRef? pooler = p.Has("bert.pooler.dense.weight")
            ? MapRef.Full("bert.pooler.dense.weight", "bert.pooler.dense.bias", Backends.WeightLayout.OutIn, d, d) : null;

        // lngain, lnbias: the last LN_out (→ head dense, + pooler) and, untied, the head LN (→ decoder, which has a bias).
        foreach (var ln in a.FoldableLns)
        {
            var readers = ln.Readers.Any(r => r.Weight == dense) && pooler is not null ? [.. ln.Readers, pooler] : ln.Readers;
            var g = p[ln.Gain]; var beta = p[ln.Bias];
            foreach (var r in readers)
                for (int i = 0; i < d; i++) for (int j = 0; j < r.Cols; j++) r.Set(p, i, j, r.Get(p, i, j) * g[i]);
            for (int i = 0; i < d; i++) beta[i] /= g[i];
            foreach (var r in readers)
            {
                if (!r.HasBias) throw new InvalidOperationException($"gauge fix: {r.Weight} reads {ln.Name} and has no bias");
                var shift = VecTimes(p, r, beta);   // (β/g)·(diag(g)·W) = β·W
                for (int j = 0; j < r.Cols; j++) r.AddBias(p, j, shift[j]);
            }
            for (int i = 0; i < d; i++) b.Mark("lngain", ln.Gain, i, 1.0);
            for (int i = 0; i < d; i++) b.Mark("lnbias", ln.Bias, i, 0.0);
        }
        // postln: β → 0 with the readers' input biases + β·W and the sublayer's output bias + β.
        foreach (var ln in a.PostLns)
        {
            var beta = (double[])p[ln.Bias].Clone();
            foreach (var r in ln.Readers)
            {
                var shift = VecTimes(p, r, beta);
                for (int j = 0; j < r.Cols; j++) r.AddBias(p, j, shift[j]);
            }
            for (int j = 0; j < d; j++) ln.Writer.AddBias(p, j, beta[j]);
            for (int i = 0; i < d; i++) b.Mark("postln", ln.Bias, i, 0.0);
        }
        if (a.Tied && !a.EncoderOnly && a.OutputMap.HasBias)
        {
            // Tied head LayerNorm: β → 0 into the decoder bias, then the decoder bias's 1_V shift (the log-softmax ignores it).
            var beta = (double[])p[a.FinalLnBias].Clone();
            var shift = VecTimes(p, a.OutputMap, beta);
            for (int j = 0; j < a.OutputMap.Cols; j++) a.OutputMap.AddBias(p, j, shift[j]);
            for (int i = 0; i < d; i++) b.Mark("postln", a.FinalLnBias, i, 0.0);
            double c0 = a.OutputMap.GetBias(p, 0);
            for (int j = 0; j < a.OutputMap.Cols; j++) a.OutputMap.AddBias(p, j, -c0);
            b.MarkBias("postln", a.OutputMap, 0, 0.0);
        }
        // lnmean (not with a single-head layer, as in GPT-2): row 0 of every reader with a bias → 0, the gain kept.
        bool singleHead = a.Attention.Any(s => s.Heads == 1);
        foreach (var ln in singleHead ? [] : a.MeanLns)
        {
            var g = p[ln.Gain]; var beta = p[ln.Bias];
            double bOverG = 0;
            for (int i = 0; i < d; i++) bOverG += beta[i] / g[i];   // 0 but for an encoder-only model's last LayerNorm (the pooler's input), whose bias stays
            foreach (var r in ln.Readers.Where(r => r.HasBias))
            {
                var u = Row(p, r, 0);
                for (int j = 0; j < r.Cols; j++) u[j] *= -g[0];
                for (int i = 0; i < d; i++) for (int j = 0; j < r.Cols; j++) r.Add(p, i, j, u[j] / g[i]);
                for (int j = 0; j < r.Cols; j++) r.AddBias(p, j, -bOverG * u[j]);
                for (int j = 0; j < r.Cols; j++) b.Mark("lnmean", r, 0, j, 0.0);
            }
        }
        bool meanRow0 = !singleHead && a.MeanLns.Any(ln => ln.Readers.Any(r => r.HasBias));

        var (qPiv, vPiv) = FixAttention(a, p, b, meanRow0, sharedPivots);

        var notRemoved = new Dictionary<string, string>
        {
            ["mlp"] = "a discrete permutation (no flat directions, no entries): hidden units ordered by the norm of their input weights and bias instead",
        };
        if (singleHead) notRemoved["lnmean"] = "kept: a single-head layer's d×d identity block in W_Q leaves no row to zero";
        if (!singleHead)
        {
            // writer1: column 0 of each sublayer output map and its bias (untied: the decoder too; its (0, 0) entry is
            // already fixed by lnmean, so d − 1 weights + the bias there; encoder-only: no decoder).
            IEnumerable<MapRef> maps = a.HasUntiedOutputMap ? [.. a.ResidualWriters, a.OutputMap] : a.ResidualWriters;
            foreach (var m in maps)
            {
                b.Fixed.TryGetValue(m.Weight, out var already);
                for (int i = 0; i < m.In; i++)
                {
                    if (already is not null && already.ContainsKey(m.Index(i, 0))) continue;
                    double w0 = m.Get(p, i, 0);
                    for (int j = 0; j < m.Cols; j++) m.Add(p, i, j, -w0);
                    b.Mark("writer1", m, i, 0, 0.0);
                }
                double c0 = m.GetBias(p, 0);
                for (int j = 0; j < m.Cols; j++) m.AddBias(p, j, -c0);
                b.MarkBias("writer1", m, 0, 0.0);
            }
        }
        else notRemoved["writer1"] = "kept: a single-head layer shares one of its directions with ov, vbias and lnmean";

        // embshift: x₀ = LN_emb(E[id] + P[pos] + S[type]) sees only the sum, up to a constant along 1 per row.
        {
            var E = p[a.TokenEmbedding]; var P = p[a.PositionEmbedding]; var S = p[a.TypeEmbedding!];
            void IntoPositions(double[] table, string name)
            {
                var w = table[..d];
                for (int v = 0; v < table.Length / d; v++) for (int i = 0; i < d; i++) table[v * d + i] -= w[i];
                for (int t = 0; t < a.Positions; t++) for (int i = 0; i < d; i++) P[t * d + i] += w[i];
                for (int i = 0; i < d; i++) b.Mark("embshift", name, i, 0.0);
            }
            void ColumnZero(double[] table, string name, int first)
            {
                for (int v = first; v < table.Length / d; v++)
                {
                    double c = table[v * d];
                    for (int i = 0; i < d; i++) table[v * d + i] -= c;
                    b.Mark("embshift", name, v * d, 0.0);
                }
            }
            IntoPositions(E, a.TokenEmbedding);
            IntoPositions(S, a.TypeEmbedding!);
            ColumnZero(P, a.PositionEmbedding, 0);
            ColumnZero(S, a.TypeEmbedding!, 1);                 // S row 0 is zero already
            if (!a.Tied) ColumnZero(E, a.TokenEmbedding, 1);    // untied or encoder-only: E is an input table alone
        }

        SortMlpUnits(a, p);
        foreach (var (t, e) in b.Fixed) foreach (var (i, v) in e) p[t][i] = v;
        CheckCounts(a, b);
        return new CanonicalForm { Params = p, Fixed = b.Fixed, Removed = b.ByKind, QPivots = qPiv, VPivots = vPiv, NotRemoved = notRemoved, Arch = "bert", D = d };
    }

    /// <summary>
    /// qk, ov, kbias, vbias (shared by GPT-2 and BERT): per head an identity block at d_h pivot rows of W_Q and W_V (row 0
    /// excluded when lnmean zeroed it), W_K and W_O absorbing the inverses; b_K → 0; b_V folded into b_O.
    /// </summary>
    static (int[][][] Q, int[][][] V) FixAttention(GaugeArch a, ParamSet p, Builder b, bool meanRow0, bool sharedPivots)
    {
        var qPiv = new int[a.Attention.Length][][];
        var vPiv = new int[a.Attention.Length][][];
        foreach (var s in a.Attention)
        {
            int k = s.HeadDim;
            qPiv[s.Layer] = new int[s.Heads][];
            vPiv[s.Layer] = new int[s.Heads][];
            int exclude = meanRow0 ? 0 : -1;
            // One set of pivot rows for every head's W_Q and W_V in the layer (maximin greedy pivoting over their
            // orthonormal bases), so the skip kernel gathers x's free columns once per layer.
            int[]? shared = sharedPivots
                ? SharedPivots([.. Enumerable.Range(0, s.Heads).SelectMany(h => new[] { s.Q.Sub(h * k, k).Matrix(p), s.V.Sub(h * k, k).Matrix(p) })], exclude)
                : null;
            for (int h = 0; h < s.Heads; h++)
            {
                // qk
                var q = s.Q.Sub(h * k, k);
                var piv = shared ?? Pivots(q.Matrix(p), exclude);
                var blk = Rows(q.Matrix(p), piv);
                var A = Inverse(blk);
                MapColsInPlace(p, q, A);
                MapColsInPlace(p, s.K.Sub(h * k, k), Transpose(blk));
                for (int i = 0; i < k; i++) for (int j = 0; j < k; j++) b.Mark("qk", q, piv[i], j, i == j ? 1.0 : 0.0);
                qPiv[s.Layer][h] = piv;
                // ov
                var v = s.V.Sub(h * k, k);
                var vp = shared ?? Pivots(v.Matrix(p), exclude);
                var vb = Rows(v.Matrix(p), vp);
                MapColsInPlace(p, v, Inverse(vb));
                MapRowsInPlace(p, s.O, h * k, vb);
                for (int i = 0; i < k; i++) for (int j = 0; j < k; j++) b.Mark("ov", v, vp[i], j, i == j ? 1.0 : 0.0);
                vPiv[s.Layer][h] = vp;
            }
            // kbias, vbias
            for (int j = 0; j < s.K.Cols; j++) b.MarkBias("kbias", s.K, j, 0.0);
            var bv = s.V.BiasVector(p);
            var shift = VecTimes(p, s.O, bv);
            for (int j = 0; j < s.O.Cols; j++) s.O.AddBias(p, j, shift[j]);
            for (int j = 0; j < s.V.Cols; j++) b.MarkBias("vbias", s.V, j, 0.0);
        }
        return (qPiv, vPiv);
    }

    /// <summary>Permutes each MLP's hidden units into ascending order of their input map's squared norm (weights and bias).</summary>
    public static void SortMlpUnits(GaugeArch a, ParamSet p)
    {
        for (int l = 0; l < a.MlpIn.Length; l++)
        {
            MapRef fc = a.MlpIn[l], proj = a.MlpOut[l];
            if (!fc.HasBias) continue;
            // The key is the unit's squared norm (weights and bias), not the bias alone: a fresh model's biases are all
            // zero, and round-off would order their ties at random.
            var key = Enumerable.Range(0, fc.Cols).Select(j => (Norm: fc.GetBias(p, j) * fc.GetBias(p, j) + Enumerable.Range(0, fc.In).Sum(i => fc.Get(p, i, j) * fc.Get(p, i, j)), J: j)).ToArray();
            int[] pi = [.. key.OrderBy(k => k.Norm).ThenBy(k => k.J).Select(k => k.J)];
            if (pi.Select((x, i) => x == i).All(b => b)) continue;
            var src = p.Clone();
            for (int j = 0; j < fc.Cols; j++)
            {
                for (int i = 0; i < fc.In; i++) fc.Set(p, i, j, fc.Get(src, i, pi[j]));
                fc.SetBias(p, j, fc.GetBias(src, pi[j]));
                for (int k = 0; k < proj.Cols; k++) proj.Set(p, j, k, proj.Get(src, pi[j], k));
            }
        }
    }

    // ---------------------------------------------------------------- linear algebra

    static double[] Row(ParamSet p, MapRef m, int i)
    {
        var r = new double[m.Cols];
        for (int j = 0; j < m.Cols; j++) r[j] = m.Get(p, i, j);
        return r;
    }

    static double[] VecTimes(ParamSet p, MapRef m, double[] x)
    {
        var y = new double[m.Cols];
        for (int i = 0; i < m.In; i++)
            if (x[i] != 0) for (int j = 0; j < m.Cols; j++) y[j] += x[i] * m.Get(p, i, j);
        return y;
    }

    /// <summary>Each row of the block and its bias → row·M (M is Cols×Cols).</summary>
    static void MapColsInPlace(ParamSet p, MapRef m, double[,] M)
    {
        int n = m.Cols;
        var w = p[m.Weight];
        var bias = m.HasBias ? p[m.Bias!] : null;
        var row = new double[n];
        for (int i = 0; i <= m.In; i++)
        {
            bool isBias = i == m.In;
            if (isBias && bias is null) break;
            for (int j = 0; j < n; j++) row[j] = isBias ? bias![m.Col0 + j] : w[m.Index(i, j)];
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++) s += row[k] * M[k, j];
                if (isBias) bias![m.Col0 + j] = s; else w[m.Index(i, j)] = s;
            }
        }
    }

    /// <summary>Rows [row0, row0 + k) of the block → M·rows.</summary>
    static void MapRowsInPlace(ParamSet p, MapRef m, int row0, double[,] M)
    {
        int k = M.GetLength(0);
        var w = p[m.Weight];
        var col = new double[k];
        for (int j = 0; j < m.Cols; j++)
        {
            for (int r = 0; r < k; r++) col[r] = w[m.Index(row0 + r, j)];
            for (int r = 0; r < k; r++)
            {
                double s = 0;
                for (int q = 0; q < k; q++) s += M[r, q] * col[q];
                w[m.Index(row0 + r, j)] = s;
            }
        }
    }

    static double[,] Rows(double[,] m, int[] rows)
    {
        int k = m.GetLength(1);
        var r = new double[rows.Length, k];
        for (int i = 0; i < rows.Length; i++) for (int j = 0; j < k; j++) r[i, j] = m[rows[i], j];
        return r;
    }

    static double[,] Transpose(double[,] a) => GroupElements.Transpose(a);

    static double[,] Orthonormal(double[,] M)
    {
        int n = M.GetLength(0), k = M.GetLength(1);
        var Q = (double[,])M.Clone();
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < k; j++)
            {
                for (int l = 0; l < j; l++)
                {
                    double dot = 0;
                    for (int i = 0; i < n; i++) dot += Q[i, j] * Q[i, l];
                    for (int i = 0; i < n; i++) Q[i, j] -= dot * Q[i, l];
                }
                double norm = 0;
                for (int i = 0; i < n; i++) norm += Q[i, j] * Q[i, j];
                norm = Math.Sqrt(norm);
                if (norm == 0) throw new InputException("gauge fix: a head's query or value map is rank deficient; no identity block exists");
                for (int i = 0; i < n; i++) Q[i, j] /= norm;
            }
        return Q;
    }

    /// <summary>
    /// One set of k pivot rows for several [n, k] blocks (a layer's W_Q^h and W_V^h): greedily the row whose smallest
    /// remaining norm over the blocks' orthonormal bases is largest, projected out of every block. Depends only on the
    /// column spaces (gauge invariant). Returned ascending.
    /// </summary>
    public static int[] SharedPivots(IReadOnlyList<double[,]> blocks, int exclude)
    {
        var Qs = blocks.Select(Orthonormal).ToList();
        int n = blocks[0].GetLength(0), k = blocks[0].GetLength(1);
        var used = new bool[n];
        if (exclude >= 0) used[exclude] = true;
        var chosen = new List<int>();
        for (int step = 0; step < k; step++)
        {
            int best = -1; double bestScore = -1;
            for (int i = 0; i < n; i++)
            {
                if (used[i]) continue;
                double score = double.PositiveInfinity;
                foreach (var Q in Qs)
                {
                    double s2 = 0;
                    for (int j = 0; j < k; j++) s2 += Q[i, j] * Q[i, j];
                    score = Math.Min(score, s2);
                }
                if (score > bestScore * (1 + 1e-12)) { bestScore = score; best = i; }
            }
            if (best < 0 || bestScore <= 1e-20) throw new InputException("gauge fix: no common set of pivot rows keeps every head's block invertible");
            used[best] = true; chosen.Add(best);
            foreach (var Q in Qs)
            {
                var v = new double[k];
                double nv = 0;
                for (int j = 0; j < k; j++) nv += Q[best, j] * Q[best, j];
                nv = Math.Sqrt(nv);
                for (int j = 0; j < k; j++) v[j] = Q[best, j] / nv;
                for (int i = 0; i < n; i++)
                {
                    double dot = 0;
                    for (int j = 0; j < k; j++) dot += Q[i, j] * v[j];
                    for (int j = 0; j < k; j++) Q[i, j] -= dot * v[j];
                }
            }
        }
        chosen.Sort();
        return [.. chosen];
    }

    /// <summary>
    /// d_h pivot rows of an [n, k] matrix M (row <paramref name="exclude"/> never chosen): orthonormalise M's columns
    /// (Q, so the choice depends only on M's column space and is invariant under M → M·A), then pick greedily the row
    /// of largest remaining norm and project it out of the others. Returned ascending.
    /// </summary>
    public static int[] Pivots(double[,] M, int exclude)
    {
        int n = M.GetLength(0), k = M.GetLength(1);
        var Q = Orthonormal(M);
        var chosen = new List<int>();
        var used = new bool[n];
        if (exclude >= 0) used[exclude] = true;
        for (int step = 0; step < k; step++)
        {
            int best = -1; double bestNorm = -1;
            for (int i = 0; i < n; i++)
            {
                if (used[i]) continue;
                double s = 0;
                for (int j = 0; j < k; j++) s += Q[i, j] * Q[i, j];
                if (s > bestNorm * (1 + 1e-12)) { bestNorm = s; best = i; }
            }
            if (best < 0 || bestNorm <= 1e-24) throw new InputException("gauge fix: a head's query or value map is rank deficient; no identity block exists");
            used[best] = true; chosen.Add(best);
            var v = new double[k];
            double nv = Math.Sqrt(bestNorm);
            for (int j = 0; j < k; j++) v[j] = Q[best, j] / nv;
            for (int i = 0; i < n; i++)
            {
                double dot = 0;
                for (int j = 0; j < k; j++) dot += Q[i, j] * v[j];
                for (int j = 0; j < k; j++) Q[i, j] -= dot * v[j];
            }
        }
        chosen.Sort();
        return [.. chosen];
    }

    /// <summary>Gauss–Jordan inverse with partial pivoting.</summary>
    public static double[,] Inverse(double[,] m)
    {
        int n = m.GetLength(0);
        var a = (double[,])m.Clone();
        var inv = new double[n, n];
        for (int i = 0; i < n; i++) inv[i, i] = 1;
        for (int c = 0; c < n; c++)
        {
            int piv = c;
            for (int r = c + 1; r < n; r++) if (Math.Abs(a[r, c]) > Math.Abs(a[piv, c])) piv = r;
            if (a[piv, c] == 0) throw new InputException("gauge fix: singular pivot block");
            if (piv != c)
                for (int j = 0; j < n; j++) { (a[c, j], a[piv, j]) = (a[piv, j], a[c, j]); (inv[c, j], inv[piv, j]) = (inv[piv, j], inv[c, j]); }
            double s = 1 / a[c, c];
            for (int j = 0; j < n; j++) { a[c, j] *= s; inv[c, j] *= s; }
            for (int r = 0; r < n; r++)
            {
                if (r == c || a[r, c] == 0) continue;
                double f = a[r, c];
                for (int j = 0; j < n; j++) { a[r, j] -= f * a[c, j]; inv[r, j] -= f * inv[c, j]; }
            }
        }
        return inv;
    }
}
