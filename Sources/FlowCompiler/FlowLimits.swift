/// The bounds every flow source is checked against before any recursive stage runs, so a hostile document costs
/// a diagnostic, never the process: docs/language.md ("Limits") lists them with their diagnostic codes.
public enum FlowLimits {
    /// Bytes of YAML or JSON source (`too-large`). The API's body limit (512 KiB) is lower and comes first.
    public static let maxSourceBytes = 4 * 1024 * 1024
    /// Maps and lists nested in the document, aliases counted at their expanded depth (`too-deep`).
    public static let maxNesting = 64
    /// Values the document holds once every alias is expanded (`too-large`): an alias bomb stops here.
    public static let maxExpandedNodes = 200_000
    /// Blocks in one flow (`too-large`): twice the largest flow the benchmarks compile.
    public static let maxBlocks = 20_000
    /// Characters of a block id, flow name, variable or key (`identifier-too-long`).
    public static let maxIdentifierLength = 128
    /// Brackets, parentheses and `not`s nested in one expression, and the depth of its tree (`too-deep`).
    public static let maxExpressionDepth = 64
    /// Tokens in one expression (`too-large`).
    public static let maxExpressionTokens = 4_096
    // Patterns are bounded where they are checked, in FlowVM: `PatternCheck.maxLength`.
}

/// What WhatsApp shows, which every flow is held to today: the checker reports past them, and the block schemas in
/// `/v1/blocks` carry them (`maxItems`, `maxLength`) so a builder can count while a person types.
enum WhatsApp {
    static let maxButtons = 3, maxButtonTitle = 20, maxRows = 10, maxRowTitle = 24
    static let maxRowDescription = 72, maxListButton = 20, maxText = 4096
}
