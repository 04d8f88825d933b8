/// One mistake (or warning) in a flow, located in its source file.
public struct Diagnostic: Sendable, Hashable, Codable {
    public enum Severity: String, Sendable, Hashable, Codable {
        case error, warning
    }

    public var severity: Severity
    /// A stable code such as `unknown-key`; docs/language.md lists them all.
    public var code: String
    public var message: String
    public var file: String
    public var line: Int
    public var column: Int
    /// The block the mistake is in, so a builder can mark its node.
    public var block: String?
    /// What to do about it.
    public var hint: String?

    public init(_ severity: Severity, _ code: String, _ message: String, file: String, at location: SourcePosition,
                block: String? = nil, hint: String? = nil) {
        self.severity = severity
        self.code = code
        self.message = message
        self.file = file
        self.line = location.line
        self.column = location.column
        self.block = block
        self.hint = hint
    }

    private enum CodingKeys: String, CodingKey {
        case severity, code, message, file, line, column, block, hint
    }

    /// Writes every key, with null for a missing block or hint, so builders can rely on the shape.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(severity, forKey: .severity)
        try c.encode(code, forKey: .code)
        try c.encode(message, forKey: .message)
        try c.encode(file, forKey: .file)
        try c.encode(line, forKey: .line)
        try c.encode(column, forKey: .column)
        try c.encode(block, forKey: .block)
        try c.encode(hint, forKey: .hint)
    }

    /// `PATH:LINE:COL: error|warning: MESSAGE [CODE]`, with the hint on its own indented line.
    public var formatted: String {
        var s = "\(file):\(line):\(column): \(severity.rawValue): \(message) [\(code)]"
        if let hint { s += "\n  hint: \(hint)" }
        return s
    }
}

/// The FlowCompiler module's one public error: compiling failed, with every diagnostic found.
public struct FlowCompilerError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The flow has errors; `diagnostics` lists them.
        case invalidFlow = "invalid_flow"
        /// The file could not be read.
        case unreadable = "unreadable"
    }
    public var code: Code
    public var diagnostics: [Diagnostic]

    public init(_ code: Code, diagnostics: [Diagnostic]) {
        self.code = code
        self.diagnostics = diagnostics
    }

    public var description: String {
        let errors = diagnostics.filter { $0.severity == .error }
        return "\(code.rawValue): \(errors.count) error(s)" + (errors.first.map { "; first: \($0.formatted)" } ?? "")
    }
}

/// Suggestions for misspellings: the closest candidate within a small edit distance.
enum Suggest {
    static func closest(to word: String, in candidates: some Sequence<String>) -> String? {
        let w = Array(word.lowercased())
        var best: (String, Int)?
        for c in candidates {
            let d = distance(w, Array(c.lowercased()))
            let limit = max(1, min(3, c.count / 3))
            if d <= limit, best == nil || d < best!.1 { best = (c, d) }
        }
        return best?.0
    }

    /// Optimal string alignment distance: edits, with a swap of two neighbours counting as one typo.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }

    /// `did you mean 'x'?` or nil.
    static func hint(_ word: String, _ candidates: some Sequence<String>) -> String? {
        closest(to: word, in: candidates).map { "did you mean '\($0)'?" }
    }
}
