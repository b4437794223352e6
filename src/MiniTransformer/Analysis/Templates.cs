namespace MiniTransformer.Analysis;

/// <summary>The controlled change between the two sentences of a pair.</summary>
public enum GrammaticalChange
{
    /// <summary>present → past of the verb ("She walks in the garden ." / "She walked in the garden .").</summary>
    Tense,
    /// <summary>singular → plural of a noun, in frames without agreement ("I saw the dog …" / "I saw the dogs …").</summary>
    Number,
}

/// <summary>
/// Two sentences (space-separated words, the final "." a word of its own) that differ in exactly one word,
/// <see cref="Changed"/>: the verb (tense) or the noun (number). <see cref="Context"/> is a word that is the same in
/// both: the subject's head for tense, the frame's verb for number. <see cref="Word"/> is the lemma (the verb's
/// base form, the noun's singular) — the unit of the train/test split.
/// </summary>
public sealed record SentencePair(GrammaticalChange Change, string Word, bool Irregular, string A, string B, int Changed, int Context);

/// <summary>
/// Sentence pairs from fixed word lists and frames. Each word appears in <c>perWord</c> distinct frames (tense: a
/// subject × adverbial combination; number: one of the noun frames), drawn without replacement by a seeded
/// <see cref="Random"/>, so the pairs are a pure function of (seed, perWord).
/// </summary>
public static class Templates
{
    /// <summary>(base, third person singular present, past, irregular past).</summary>
    public static readonly (string Base, string Present, string Past, bool Irregular)[] Verbs =
    [
        ("walk", "walks", "walked", false), ("work", "works", "worked", false), ("play", "plays", "played", false),
        ("wait", "waits", "waited", false), ("talk", "talks", "talked", false), ("listen", "listens", "listened", false),
        ("travel", "travels", "traveled", false), ("cook", "cooks", "cooked", false), ("rest", "rests", "rested", false),
        ("climb", "climbs", "climbed", false), ("shout", "shouts", "shouted", false), ("pray", "prays", "prayed", false),
        ("study", "studies", "studied", false), ("paint", "paints", "painted", false), ("fish", "fishes", "fished", false),
        ("hunt", "hunts", "hunted", false), ("wander", "wanders", "wandered", false), ("jump", "jumps", "jumped", false),
        ("laugh", "laughs", "laughed", false), ("cry", "cries", "cried", false), ("smile", "smiles", "smiled", false),
        ("dance", "dances", "danced", false), ("relax", "relaxes", "relaxed", false), ("practice", "practices", "practiced", false),
        ("live", "lives", "lived", false), ("stay", "stays", "stayed", false), ("watch", "watches", "watched", false),
        ("learn", "learns", "learned", false),
        ("run", "runs", "ran", true), ("swim", "swims", "swam", true), ("sing", "sings", "sang", true),
        ("sleep", "sleeps", "slept", true), ("eat", "eats", "ate", true), ("drink", "drinks", "drank", true),
        ("write", "writes", "wrote", true), ("speak", "speaks", "spoke", true), ("sit", "sits", "sat", true),
        ("stand", "stands", "stood", true), ("fly", "flies", "flew", true), ("drive", "drives", "drove", true),
        ("ride", "rides", "rode", true), ("fight", "fights", "fought", true), ("think", "thinks", "thought", true),
        ("hide", "hides", "hid", true), ("teach", "teaches", "taught", true), ("go", "goes", "went", true),
        ("come", "comes", "came", true), ("fall", "falls", "fell", true), ("win", "wins", "won", true),
        ("lose", "loses", "lost", true),
    ];

    /// <summary>(singular, plural, irregular plural).</summary>
    public static readonly (string Singular, string Plural, bool Irregular)[] Nouns =
    [
        ("dog", "dogs", false), ("cat", "cats", false), ("horse", "horses", false), ("bird", "birds", false),
        ("house", "houses", false), ("car", "cars", false), ("tree", "trees", false), ("book", "books", false),
        ("chair", "chairs", false), ("table", "tables", false), ("window", "windows", false), ("door", "doors", false),
        ("garden", "gardens", false), ("river", "rivers", false), ("road", "roads", false), ("bridge", "bridges", false),
        ("bottle", "bottles", false), ("key", "keys", false), ("phone", "phones", false), ("flower", "flowers", false),
        ("apple", "apples", false), ("boat", "boats", false), ("student", "students", false), ("teacher", "teachers", false),
        ("doctor", "doctors", false), ("friend", "friends", false), ("girl", "girls", false), ("boy", "boys", false),
        ("box", "boxes", false), ("church", "churches", false), ("city", "cities", false), ("baby", "babies", false),
        ("story", "stories", false), ("letter", "letters", false), ("picture", "pictures", false), ("stone", "stones", false),
        ("child", "children", true), ("man", "men", true), ("woman", "women", true), ("mouse", "mice", true),
        ("foot", "feet", true), ("tooth", "teeth", true), ("goose", "geese", true), ("knife", "knives", true),
        ("leaf", "leaves", true), ("wolf", "wolves", true), ("person", "people", true), ("wife", "wives", true),
    ];

    /// <summary>Singular third-person subjects of the tense frames; the last word is the subject's head.</summary>
    public static readonly string[] Subjects = ["She", "He", "The man", "My sister", "The old farmer", "Our teacher", "The child", "The tourist"];

    /// <summary>Adverbials that fit present and past alike.</summary>
    public static readonly string[] Adverbials = ["in the garden", "every morning", "with a friend", "near the river", "after dinner", "at home", "quietly", "in the city"];

    /// <summary>Noun frames: {N} is the noun slot; the verb (the context word) is past tense or follows a modal, so nothing agrees with the noun.</summary>
    public static readonly (string Frame, int ContextWord)[] NounFrames =
    [
        ("The {N} stayed near the house .", 2), ("I saw the {N} near the river .", 1), ("The {N} looked strange today .", 2),
        ("She talked about the {N} again .", 1), ("We found the {N} in the garden .", 1), ("The {N} disappeared after dinner .", 2),
        ("He painted the {N} yesterday .", 1), ("They remembered the {N} well .", 1), ("The {N} will arrive soon .", 3),
        ("My mother liked the {N} .", 2),
    ];

    /// <summary>The most pairs per word each change allows.</summary>
    public static int MaxPerWord(GrammaticalChange change) =>
        change == GrammaticalChange.Tense ? Subjects.Length * Adverbials.Length : NounFrames.Length;

    /// <summary>Verbs.Length·perWord tense pairs followed by Nouns.Length·perWord number pairs.</summary>
    public static List<SentencePair> Generate(int perWord, int seed)
    {
        if (perWord < 1 || perWord > Math.Min(MaxPerWord(GrammaticalChange.Tense), MaxPerWord(GrammaticalChange.Number)))
            throw new ArgumentException($"perWord must be in 1..{Math.Min(MaxPerWord(GrammaticalChange.Tense), MaxPerWord(GrammaticalChange.Number))} (got {perWord})");
        var rng = new Random(seed);
        var pairs = new List<SentencePair>();
        foreach (var (lemma, present, past, irregular) in Verbs)
        {
            foreach (int k in Choose(rng, Subjects.Length * Adverbials.Length, perWord))
            {
                string subject = Subjects[k / Adverbials.Length], adverbial = Adverbials[k % Adverbials.Length];
                int verbIndex = subject.Split(' ').Length;
                pairs.Add(new SentencePair(GrammaticalChange.Tense, lemma, irregular,
                    $"{subject} {present} {adverbial} .", $"{subject} {past} {adverbial} .", verbIndex, verbIndex - 1));
            }
        }
        foreach (var (singular, plural, irregular) in Nouns)
        {
            foreach (int k in Choose(rng, NounFrames.Length, perWord))
            {
                var (frame, context) = NounFrames[k];
                int nounIndex = Array.IndexOf(frame.Split(' '), "{N}");
                pairs.Add(new SentencePair(GrammaticalChange.Number, singular, irregular,
                    frame.Replace("{N}", singular), frame.Replace("{N}", plural), nounIndex, context));
            }
        }
        return pairs;
    }

    /// <summary>m distinct integers of [0, n), in increasing order (a partial Fisher–Yates shuffle).</summary>
    static int[] Choose(Random rng, int n, int m)
    {
        var a = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < m; i++) { int j = i + rng.Next(n - i); (a[i], a[j]) = (a[j], a[i]); }
        var r = a[..m];
        Array.Sort(r);
        return r;
    }
}
