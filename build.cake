// Build script: dotnet tool restore && dotnet cake --target=<Clean|Restore|Build|Test|Bench>
var target = Argument("target", "Test");
var configuration = Argument("configuration", "Release");
var solution = "./MiniTransformer.sln";

Task("Clean")
    .Does(() =>
{
    CleanDirectories("./src/**/bin");
    CleanDirectories("./src/**/obj");
    CleanDirectories("./tests/**/bin");
    CleanDirectories("./tests/**/obj");
    CleanDirectories("./bench/**/bin");
    CleanDirectories("./bench/**/obj");
});

Task("Restore")
    .Does(() => DotNetRestore(solution));

Task("Build")
    .IsDependentOn("Restore")
    .Does(() => DotNetBuild(solution, new DotNetBuildSettings { Configuration = configuration, NoRestore = true }));

Task("Test")
    .IsDependentOn("Build")
    .Does(() => DotNetTest(solution, new DotNetTestSettings { Configuration = configuration, NoBuild = true, NoRestore = true }));

// Per-op micro-benchmarks (BenchmarkDotNet) and the end-to-end training step.
Task("Bench")
    .IsDependentOn("Build")
    .Does(() =>
{
    DotNetRun("./bench/MiniTransformer.Bench/MiniTransformer.Bench.csproj",
        new ProcessArgumentBuilder().Append("--filter").Append("*"),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
    DotNetRun("./src/MiniTransformer.Cli/MiniTransformer.Cli.csproj",
        new ProcessArgumentBuilder().Append("bench").Append("train").Append("--preset").Append("gpt2-124m").Append("--batch").Append("4").Append("--seq").Append("64"),
        new DotNetRunSettings { Configuration = configuration, NoBuild = true });
});

RunTarget(target);
