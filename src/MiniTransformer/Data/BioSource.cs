namespace MiniTransformer.Data;

/// <summary>
/// <c>synthetic:bio</c>: synthetic biographies in the spirit of "Physics of Language Models, part 3.1".
/// A world of <see cref="People"/> people (from the seed) with five attributes each: birth date, birth city,
/// university, major, employer. Train rows pack, separated by <c>&lt;eot&gt;</c>, (a) biographies of any of the people,
/// five sentences in random order each rendered from one of four templates, and (b) question-answer pairs
/// ("What is the birth city of Anna Novak? Boston.") about the first half of the people only; all positions scored.
/// Val rows are question-answer pairs about the held-out half, scored only on the answer tokens, so val accuracy =
/// held-out QA accuracy: knowledge the model has to extract from biographies it saw without any QA for that person.
/// Word-level tokenizer (about 320 tokens), so a biography is about 60 tokens and a QA pair about 12.
/// </summary>
public sealed class BioSource : RowSource
{
    public const string EndToken = "<eot>";

    /// <summary>Probability that a train item is a biography (else a QA pair).</summary>
    public const double BiographyFraction = 0.6;

    private const int AttrCount = 5;

    private static readonly string[] s_firstNames =
    [
        "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Klara", "Leo", "Maya", "Nico",
        "Olivia", "Paul", "Quinn", "Rosa", "Samuel", "Tara", "Umar", "Vera", "Walter", "Xenia", "Yusuf", "Zoe", "Alma",
        "Bruno", "Celia", "Dante", "Edith", "Fabian", "Greta", "Henrik", "Ines", "Jasper", "Lena", "Marco", "Nora", "Oscar",
    ];

    private static readonly string[] s_lastNames =
    [
        "Abbott", "Brennan", "Castillo", "Dalton", "Eriksen", "Fischer", "Garcia", "Hartmann", "Ibarra", "Jensen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quigley", "Rossi", "Sato", "Tanaka", "Urban",
        "Vasquez", "Whitfield", "Xu", "Yilmaz", "Zimmer", "Ashford", "Bauer", "Chen", "Dubois", "Ellison", "Fontaine",
        "Gallagher", "Holm", "Ivanova", "Jovanovic", "Keller", "Larsen", "Mendez", "Nakamura",
    ];

    private static readonly string[] s_months =
    [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December",
    ];

    private const int FirstYear = 1940, YearCount = 60, DayCount = 28;

    private static readonly string[] s_cities =
    [
        "Boston", "Chicago", "Denver", "Seattle", "Austin", "Portland", "Atlanta", "Phoenix", "Miami", "Houston", "Dallas",
        "Detroit", "Memphis", "Nashville", "Omaha", "Tucson", "Raleigh", "Madison", "Albany", "Richmond", "Spokane",
        "Fresno", "Tulsa", "Reno",
    ];

    private static readonly string[] s_universities =
    [
        "MIT", "Stanford University", "Harvard University", "Yale University", "Princeton University", "Caltech",
        "Cornell University", "Duke University", "Rice University", "Brown University", "Purdue University",
        "Emory University", "Tufts University", "Vanderbilt University", "Columbia University", "Northwestern University",
    ];

    private static readonly string[] s_majors =
    [
        "Computer Science", "Physics", "Mathematics", "Economics", "Biology", "Chemistry", "History", "Philosophy",
        "Linguistics", "Psychology", "Architecture", "Music", "Nursing", "Geology", "Statistics", "Sociology",
    ];

    private static readonly string[] s_employers =
    [
        "Google", "Microsoft", "Boeing", "Intel", "Pfizer", "Netflix", "Oracle", "Cisco", "Nvidia", "Adobe", "Salesforce",
        "Walmart", "Costco", "Ford", "Honda", "Siemens",
    ];

    // Biography sentence templates per attribute; {N} = full name, {V} = attribute value.
    private static readonly string[][] s_bioTemplates =
    [
        ["{N} was born on {V}.", "{N} came into this world on {V}.", "The birthday of {N} is {V}.", "{N} celebrates a birthday on {V}."],
        ["{N} was born in {V}.", "{N} spent early years in {V}.", "The hometown of {N} is {V}.", "{N} grew up in {V}."],
        ["{N} studied at {V}.", "{N} graduated from {V}.", "{N} received an education at {V}.", "{N} is an alumnus of {V}."],
        ["{N} majored in {V}.", "{N} focused on {V} in college.", "The field of study of {N} was {V}.", "{N} earned a degree in {V}."],
        ["{N} works for {V}.", "{N} is employed by {V}.", "{N} has a job at {V}.", "The employer of {N} is {V}."],
    ];

    private static readonly string[] s_questions =
    [
        "What is the birth date of {N}?",
        "What is the birth city of {N}?",
        "Which university did {N} attend?",
        "What was the major of {N}?",
        "Which company employs {N}?",
    ];

    private static readonly WordTokenizer s_tokenizer = BuildTokenizer();

    private readonly Person[] _people;

    // Pre-tokenized pieces: per person the name and the five values; per attribute the template pieces.
    private readonly int[][] _nameIds;
    private readonly int[][][] _valueIds;
    private static readonly Template[][] s_bioTemplateIds = [.. s_bioTemplates.Select(ts => ts.Select(Template.Parse).ToArray())];
    private static readonly Template[] s_questionIds = [.. s_questions.Select(Template.Parse)];

    private readonly int _eot = s_tokenizer.EndOfText!.Value;
    private readonly int _period = s_tokenizer.Id(".");

    /// <param name="seed">Seeds the world (people and attributes) and the batches.</param>
    /// <param name="people">Number of people, 2..1600; the first half (rounded up) has QA in train.</param>
    public BioSource(int seed, int people = 300) : base("synthetic:bio", seed)
    {
        if (people < 2 || people > s_firstNames.Length * s_lastNames.Length)
            throw new ArgumentOutOfRangeException(nameof(people), $"need 2..{s_firstNames.Length * s_lastNames.Length} people, got {people}");

        var rng = DetRng.From(seed, 7100);
        var names = new int[s_firstNames.Length * s_lastNames.Length];
        for (int i = 0; i < names.Length; i++) names[i] = i;
        rng.Shuffle(names.AsSpan());
        _people = new Person[people];
        for (int p = 0; p < people; p++)
        {
            string name = $"{s_firstNames[names[p] / s_lastNames.Length]} {s_lastNames[names[p] % s_lastNames.Length]}";
            string date = $"{s_months[rng.Next(12)]} {1 + rng.Next(DayCount)}, {FirstYear + rng.Next(YearCount)}";
            _people[p] = new Person(name,
            [
                date, s_cities[rng.Next(s_cities.Length)], s_universities[rng.Next(s_universities.Length)],
                s_majors[rng.Next(s_majors.Length)], s_employers[rng.Next(s_employers.Length)],
            ]);
        }
        TrainPeopleCount = (people + 1) / 2;
        _nameIds = [.. _people.Select(p => s_tokenizer.Encode(p.Name))];
        _valueIds = [.. _people.Select(p => p.Values.Select(s_tokenizer.Encode).ToArray())];
    }

    /// <summary>A person: full name and the attribute values in the order birth date, birth city, university, major, employer.</summary>
    public sealed record Person(string Name, IReadOnlyList<string> Values);

    public IReadOnlyList<Person> People => _people;

    /// <summary>People [0, TrainPeopleCount) have QA in train; the rest are held out (their QA forms the val split).</summary>
    public int TrainPeopleCount { get; }

    public IEnumerable<string> HeldOutNames => _people.Skip(TrainPeopleCount).Select(p => p.Name);

    public IEnumerable<string> TrainQaNames => _people.Take(TrainPeopleCount).Select(p => p.Name);

    public override ITokenizer Tokenizer => s_tokenizer;

    public override string Describe() =>
        $"{Spec}: {_people.Length} synthetic people, 5 attributes; train = biographies of all (4 templates per sentence, " +
        $"shuffled order) + QA for {TrainPeopleCount}; val accuracy = answer-token accuracy of QA about the " +
        $"{_people.Length - TrainPeopleCount} held-out people (knowledge extraction)";

    /// <summary>Questions about held-out people, each ending in '?'; the model should answer with the value and '.'.</summary>
    public override IReadOnlyList<string> SamplePrompts(int count)
    {
        int heldOut = _people.Length - TrainPeopleCount;
        var prompts = new string[count];
        for (int i = 0; i < count; i++)
        {
            var rng = DetRng.From(Seed, 7003, i);
            var person = _people[TrainPeopleCount + rng.Next(heldOut)];
            prompts[i] = s_questions[i % AttrCount].Replace("{N}", person.Name, StringComparison.Ordinal);
        }
        return prompts;
    }

    /// <summary>The text of a QA pair: question and answer, e.g. "What is the birth city of Anna Novak? Boston."</summary>
    public string QuestionAnswer(int person, int attribute) =>
        s_questions[attribute].Replace("{N}", _people[person].Name, StringComparison.Ordinal) + " " + _people[person].Values[attribute] + ".";

    private protected override void FillRow(Split split, ref DetRng rng, ref RowWriter row)
    {
        if (split == Split.Train)
        {
            Span<int> order = stackalloc int[AttrCount];
            while (!row.Full)
            {
                if (rng.Chance(BiographyFraction))
                {
                    int p = rng.Next(_people.Length);
                    for (int a = 0; a < AttrCount; a++) order[a] = a;
                    rng.Shuffle(order);
                    foreach (int a in order)
                    {
                        var template = s_bioTemplateIds[a][rng.Next(s_bioTemplateIds[a].Length)];
                        template.Write(ref row, _nameIds[p], _valueIds[p][a], score: true);
                        row.Add(_period, score: true);
                    }
                }
                else
                {
                    WriteQa(ref row, rng.Next(TrainPeopleCount), rng.Next(AttrCount), scoreQuestion: true);
                }
                row.Add(_eot, score: true);
            }
        }
        else
        {
            // Every (held-out person, attribute) question at most once per row, in random order (reshuffled when used up).
            int heldOut = _people.Length - TrainPeopleCount;
            var pairs = new int[heldOut * AttrCount];
            for (int i = 0; i < pairs.Length; i++) pairs[i] = i;
            int next = pairs.Length;
            while (!row.Full)
            {
                if (next == pairs.Length)
                {
                    rng.Shuffle(pairs.AsSpan());
                    next = 0;
                }
                int pair = pairs[next++];
                WriteQa(ref row, TrainPeopleCount + pair / AttrCount, pair % AttrCount, scoreQuestion: false);
                row.Add(_eot, score: false);
            }
        }
    }

    private void WriteQa(ref RowWriter row, int person, int attribute, bool scoreQuestion)
    {
        s_questionIds[attribute].Write(ref row, _nameIds[person], [], scoreQuestion);
        row.Add(_valueIds[person][attribute], score: true);
        row.Add(_period, score: scoreQuestion);
    }

    private static WordTokenizer BuildTokenizer()
    {
        var words = new HashSet<string>(StringComparer.Ordinal);
        void AddText(string text)
        {
            foreach (string w in WordTokenizer.Split(text.Replace("{N}", " ", StringComparison.Ordinal).Replace("{V}", " ", StringComparison.Ordinal)))
                words.Add(w);
        }
        foreach (var t in s_bioTemplates.SelectMany(x => x)) AddText(t);
        foreach (var q in s_questions) AddText(q);
        foreach (var v in s_firstNames.Concat(s_lastNames).Concat(s_months).Concat(s_cities).Concat(s_universities)
                     .Concat(s_majors).Concat(s_employers)) AddText(v);
        for (int d = 1; d <= DayCount; d++) words.Add(d.ToString(System.Globalization.CultureInfo.InvariantCulture));
        for (int y = FirstYear; y < FirstYear + YearCount; y++) words.Add(y.ToString(System.Globalization.CultureInfo.InvariantCulture));
        words.Add(",");
        words.Add(".");
        words.Add("?");
        words.Remove(EndToken);
        return new WordTokenizer([EndToken, .. words.Order(StringComparer.Ordinal)], EndToken);
    }

    /// <summary>A sentence template as token pieces around the {N} and {V} slots.</summary>
    private sealed class Template
    {
        private readonly (int[] Tokens, char Slot)[] _parts; // Slot: 'N', 'V' or '\0' for literal tokens

        private Template((int[] Tokens, char Slot)[] parts) => _parts = parts;

        public static Template Parse(string text)
        {
            var parts = new List<(int[], char)>();
            // Strip the final '.', which the writer adds so that it can be scored separately.
            string body = text.EndsWith('.') ? text[..^1] : text;
            int pos = 0;
            while (pos < body.Length)
            {
                int slot = body.IndexOf('{', pos);
                if (slot < 0) slot = body.Length;
                if (slot > pos) parts.Add((s_tokenizer.Encode(body[pos..slot]), '\0'));
                if (slot < body.Length)
                {
                    parts.Add(([], body[slot + 1]));
                    pos = slot + 3;
                }
                else
                {
                    pos = slot;
                }
            }
            return new Template([.. parts]);
        }

        public void Write(ref RowWriter row, scoped ReadOnlySpan<int> name, scoped ReadOnlySpan<int> value, bool score)
        {
            foreach (var (tokens, slot) in _parts)
            {
                var piece = slot switch { 'N' => name, 'V' => value, _ => tokens };
                row.Add(piece, score);
            }
        }
    }
}
