namespace MiniTransformer;

/// <summary>
/// Bad input from the user: a missing or corrupt file, a wrong shape, an unknown flag value.
/// The command line turns it into one <c>error: ...</c> line on stderr and exit code 2.
/// The message must say what is wrong and where (file, tensor, flag).
/// </summary>
public sealed class InputException(string message) : Exception(message);
