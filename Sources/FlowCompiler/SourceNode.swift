import Yams

/// The YAML/JSON document as a tree of located nodes: every scalar is kept as text with its quoting style,
/// so YAML 1.1 surprises (`NO` read as false) never happen; the parser types values itself.
indirect enum SourceNode: Sendable {
    struct Scalar: Sendable {
        var text: String
        /// Whether the scalar was quoted (or a block scalar) in the source: quoted text is always text.
        var quoted: Bool
        var location: SourcePosition
        /// Where the scalar's content starts (after an opening quote).
        var contentLocation: SourcePosition
        /// Where the text's second and later lines start in the file.
        var continuationColumn: Int = 1
    }
    struct Entry: Sendable {
        var key: String
        var keyLocation: SourcePosition
        var value: SourceNode
    }

    case scalar(Scalar)
    case mapping([Entry], SourcePosition)
    case sequence([SourceNode], SourcePosition)

    var location: SourcePosition {
        switch self {
        case .scalar(let s): s.location
        case .mapping(_, let l), .sequence(_, let l): l
        }
    }

    var kindName: String {
        switch self {
        case .scalar: "a value"
        case .mapping: "a map"
        case .sequence: "a list"
        }
    }

    var scalar: Scalar? {
        if case .scalar(let s) = self { return s }
        return nil
    }

    var entries: [Entry]? {
        if case .mapping(let e, _) = self { return e }
        return nil
    }

    subscript(key: String) -> SourceNode? { entries?.first { $0.key == key }?.value }

    /// The JSON Pointer (RFC 6901) of the deepest node that starts at or before `position`: where in the document
    /// a diagnostic at that position is, as a builder names a form field (`/blocks/menu/buttons/3/title`). A
    /// position on a key points at that key's entry; "" is the whole document. A block-style map starts where its
    /// first key does, so `atContainer` says which one a diagnostic there is about: the map (something is missing
    /// from it) or its first entry.
    func pointer(to position: SourcePosition, atContainer: Bool = false) -> String {
        var tokens: [String] = []
        var node = self
        descend: while true {
            switch node {
            case .scalar:
                break descend
            case .mapping(let entries, let start):
                if atContainer, start == position { break descend }
                // Entries are in source order, so the last one that starts before the position holds it.
                guard let entry = entries.last(where: { $0.keyLocation <= position }) else { break descend }
                tokens.append(entry.key)
                guard entry.value.location <= position else { break descend }
                node = entry.value
            case .sequence(let items, _):
                guard let index = items.lastIndex(where: { $0.location <= position }) else { break descend }
                tokens.append(String(index))
                node = items[index]
            }
        }
        return tokens.map { "/" + $0.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1") }.joined()
    }

    /// Parses YAML or JSON; a syntax error comes back as a located message.
    static func parse(_ text: String) -> Result<SourceNode?, ExpressionError> {
        if text.utf8.count > FlowLimits.maxSourceBytes {
            return .failure(ExpressionError(message: "the flow is larger than \(FlowLimits.maxSourceBytes / 1024) KiB",
                                            location: SourcePosition(line: 1, column: 1), code: "too-large"))
        }
        // Yams composes recursively and expands aliases in full: measure first, without recursion.
        if let refused = YAMLScan.check(text) {
            return .failure(ExpressionError(message: refused.message, location: refused.location, code: refused.code))
        }
        do {
            guard let node = try Yams.compose(yaml: text) else { return .success(nil) }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            return .success(convert(node, lines: lines))
        } catch let error as YamlError {
            switch error {
            case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
                 .composer(let context, let problem, let mark, _):
                let where_ = context.map { " \($0.text)" } ?? ""
                return .failure(ExpressionError(message: "\(problem)\(where_)", location: SourcePosition(line: mark.line, column: mark.column)))
            case .duplicatedKeysInMapping(let duplicates, let context):
                return .failure(ExpressionError(message: "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in a map", location: SourcePosition(line: context.mark.line, column: context.mark.column)))
            case .reader(let problem, _, _, _):
                return .failure(ExpressionError(message: problem, location: SourcePosition(line: 1, column: 1)))
            default:
                return .failure(ExpressionError(message: "\(error)", location: SourcePosition(line: 1, column: 1)))
            }
        } catch {
            return .failure(ExpressionError(message: "\(error)", location: SourcePosition(line: 1, column: 1)))
        }
    }

    private static func location(_ mark: Mark?) -> SourcePosition {
        SourcePosition(line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    /// Where a block scalar's (`|` or `>`) text starts: the first non-blank line after its indicator.
    private static func blockContent(after mark: SourcePosition, lines: [Substring]) -> SourcePosition {
        var line = mark.line  // 1-based line of the indicator; lines[line] is the next one
        while line < lines.count {
            let text = lines[line]
            if !text.allSatisfy({ $0 == " " }) {
                let indent = text.prefix { $0 == " " }.count
                return SourcePosition(line: line + 1, column: indent + 1)
            }
            line += 1
        }
        return mark
    }

    private static func convert(_ node: Node, lines: [Substring]) -> SourceNode {
        switch node {
        case .scalar(let s):
            let loc = location(s.mark)
            let quoted = s.style != .plain && s.style != .any
            let offset = (s.style == .singleQuoted || s.style == .doubleQuoted) ? 1 : 0
            let content = (s.style == .literal || s.style == .folded)
                ? blockContent(after: loc, lines: lines)
                : loc.advanced(by: offset)
            let isBlock = s.style == .literal || s.style == .folded
            return .scalar(Scalar(text: s.string, quoted: quoted, location: loc, contentLocation: content,
                                  continuationColumn: isBlock ? content.column : 1))
        case .mapping(let m):
            let entries = m.map { pair in
                Entry(key: pair.key.string ?? "\(pair.key)", keyLocation: location(pair.key.mark), value: convert(pair.value, lines: lines))
            }
            return .mapping(entries, location(m.mark))
        case .sequence(let seq):
            return .sequence(seq.map { convert($0, lines: lines) }, location(seq.mark))
        case .alias(let a):
            return .scalar(Scalar(text: "", quoted: false, location: location(a.mark), contentLocation: location(a.mark)))
        }
    }
}
