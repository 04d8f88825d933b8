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
    /// Where in the document the mistake is, as a JSON Pointer (`/blocks/menu/buttons/3/title`), so a builder can
    /// mark the form field; nil when the document could not be read.
    public var path: String?

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
        case severity, code, message, file, line, column, block, hint, path
    }

    /// Writes every key, with null for a missing block, hint or path, so builders can rely on the shape.
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
        try c.encode(path, forKey: .path)
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
///
/// Its cost is bounded whatever the flow: words and candidates past `FlowLimits.maxIdentifierLength` are not
/// compared, candidates whose length alone rules them out are skipped, at most `maxCandidates` are looked at, and
/// the distance is computed only within the band it may still win in, stopping as soon as it cannot.
enum Suggest {
    static let maxCandidates = 2_000

    static func closest(to word: String, in candidates: some Sequence<String>) -> String? {
        guard word.utf8.count <= FlowLimits.maxIdentifierLength * 4 else { return nil }
        let w = Suggest.scalars(word)
        guard w.count <= FlowLimits.maxIdentifierLength else { return nil }
        var best: (String, Int)?
        var examined = 0
        for c in candidates {
            examined += 1
            if examined > maxCandidates { break }
            guard c.utf8.count <= FlowLimits.maxIdentifierLength * 4 else { continue }
            let candidate = Suggest.scalars(c)
            let limit = min(max(1, min(3, candidate.count / 3)), (best?.1 ?? Int.max) - 1)
            guard limit >= 0, abs(candidate.count - w.count) <= limit else { continue }
            if let d = distance(w, candidate, atMost: limit) { best = (c, d) }
        }
        return best?.0
    }

    /// Lower-cased Unicode scalars: comparing them is cheap, unlike `Character`s.
    static func scalars(_ s: String) -> [UInt32] { s.lowercased().unicodeScalars.map(\.value) }

    /// Optimal string alignment distance (edits, with a swap of two neighbours counting as one typo) when it is at
    /// most `bound`, else nil; only cells within `bound` of the diagonal are computed.
    static func distance(_ a: [UInt32], _ b: [UInt32], atMost bound: Int) -> Int? {
        guard abs(a.count - b.count) <= bound else { return nil }
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        let infinity = bound + 1
        let width = b.count + 1
        var previous2 = [Int](repeating: infinity, count: width)
        var previous = (0..<width).map { $0 <= bound ? $0 : infinity }
        var current = [Int](repeating: infinity, count: width)
        for i in 1...a.count {
            let low = max(1, i - bound), high = min(b.count, i + bound)
            // Only the band and its two edges are read from this row later.
            for j in max(0, low - 1)...min(b.count, high + 1) { current[j] = infinity }
            current[0] = i <= bound ? i : infinity
            var rowBest = current[0]
            if low <= high {
                for j in low...high {
                    let cost = a[i - 1] == b[j - 1] ? 0 : 1
                    var d = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d = min(d, previous2[j - 2] + 1) }
                    current[j] = min(d, infinity)
                    rowBest = min(rowBest, current[j])
                }
            }
            if rowBest > bound { return nil }
            (previous2, previous, current) = (previous, current, previous2)
        }
        let d = previous[b.count]
        return d <= bound ? d : nil
    }

    /// `did you mean 'x'?` or nil.
    static func hint(_ word: String, _ candidates: some Sequence<String>) -> String? {
        closest(to: word, in: candidates).map { "did you mean '\($0)'?" }
    }
}
