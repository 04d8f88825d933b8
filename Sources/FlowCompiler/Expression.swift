import FlowVM

/// A position in a source file: 1-based line and column (columns count Unicode scalars, as Yams does).
public struct SourcePosition: Sendable, Hashable, Comparable {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public static func < (a: SourcePosition, b: SourcePosition) -> Bool {
        (a.line, a.column) < (b.line, b.column)
    }
    /// The location `offset` characters further along the same line.
    func advanced(by offset: Int) -> SourcePosition { SourcePosition(line: line, column: column + offset) }
}

/// A parsed expression, each node with its location.
indirect enum Expr: Sendable {
    case literal(Value, SourcePosition)
    case variable(String, SourcePosition)
    case member(Expr, String, SourcePosition)
    case index(Expr, Expr, SourcePosition)
    case unary(UnaryOperator, Expr, SourcePosition)
    case binary(BinaryOperator, Expr, Expr, SourcePosition)
    case and(Expr, Expr, SourcePosition)
    case or(Expr, Expr, SourcePosition)
    case coalesce(Expr, Expr, SourcePosition)
    case call(String, [Expr], SourcePosition)
    case list([Expr], SourcePosition)
    case map([(String, Expr)], SourcePosition)
    /// A template's parts joined as text.
    case concat([Expr], SourcePosition)

    var location: SourcePosition {
        switch self {
        case .literal(_, let l), .variable(_, let l), .member(_, _, let l), .index(_, _, let l), .unary(_, _, let l),
             .binary(_, _, _, let l), .and(_, _, let l), .or(_, _, let l), .coalesce(_, _, let l), .call(_, _, let l),
             .list(_, let l), .map(_, let l), .concat(_, let l):
            l
        }
    }

    /// The depth of this expression's tree, measured without recursion (it runs before the depth is known to be safe).
    var height: Int {
        var deepest = 0
        var stack: [(Expr, Int)] = [(self, 1)]
        while let (e, d) = stack.popLast() {
            deepest = max(deepest, d)
            if deepest > FlowLimits.maxExpressionDepth { return deepest }
            switch e {
            case .literal, .variable: break
            case .member(let a, _, _), .unary(_, let a, _): stack.append((a, d + 1))
            case .index(let a, let b, _), .binary(_, let a, let b, _), .and(let a, let b, _), .or(let a, let b, _),
                 .coalesce(let a, let b, _):
                stack.append((a, d + 1))
                stack.append((b, d + 1))
            case .call(_, let args, _), .list(let args, _), .concat(let args, _): for a in args { stack.append((a, d + 1)) }
            case .map(let pairs, _): for (_, a) in pairs { stack.append((a, d + 1)) }
            }
        }
        return deepest
    }

    /// The root variables this expression reads.
    func variables(into out: inout [(String, SourcePosition)]) {
        switch self {
        case .literal: break
        case .variable(let n, let l): out.append((n, l))
        case .member(let e, _, _), .unary(_, let e, _): e.variables(into: &out)
        case .index(let a, let b, _), .binary(_, let a, let b, _), .and(let a, let b, _), .or(let a, let b, _),
             .coalesce(let a, let b, _):
            a.variables(into: &out)
            b.variables(into: &out)
        case .call(_, let args, _), .list(let args, _), .concat(let args, _): for a in args { a.variables(into: &out) }
        case .map(let pairs, _): for (_, e) in pairs { e.variables(into: &out) }
        }
    }
}

/// A string with `{{ expression }}` holes.
struct Template: Sendable {
    enum Part: Sendable {
        case text(String)
        case expr(Expr)
    }
    var parts: [Part]
    var location: SourcePosition

    /// The text, when the template has no holes.
    var constantText: String? {
        var s = ""
        for p in parts {
            guard case .text(let t) = p else { return nil }
            s += t
        }
        return s
    }
}

/// An expression or template error, located.
struct ExpressionError: Error {
    var message: String
    var location: SourcePosition
    /// A diagnostic code of its own (`too-deep`, `too-large`); nil for the context's usual syntax code.
    var code: String? = nil
}

/// Reads expressions with a hand-written Pratt parser.
///
/// Precedence, loosest first: `or`; `and`; `not`; comparisons, `in`, `matches`; `??`; `+ -`; `* / %`;
/// unary `-`; member, index and call.
struct ExpressionParser {
    enum Token: Equatable {
        case number(Double), string(String), identifier(String), symbol(String), end
    }

    private var tokens: [(Token, Int)] = []
    private var position = 0
    /// How deep the parser has recursed: brackets, parentheses, `not`s and operands of operators.
    private var depth = 0
    private let base: SourcePosition
    private let source: String

    /// Parses `text`, whose first character is at `base`.
    static func parse(_ text: String, at base: SourcePosition) throws(ExpressionError) -> Expr {
        var p = try ExpressionParser(text, base: base)
        let e = try p.expression(0)
        guard p.peek == .end else { throw p.error("unexpected \(p.describe(p.peek))") }
        // A long chain of operators (`a + a + … + a`) is flat in the text but deep as a tree; later stages recurse.
        if e.height > FlowLimits.maxExpressionDepth {
            throw ExpressionError(message: "this expression is more than \(FlowLimits.maxExpressionDepth) operations deep; split it with set:",
                                  location: base, code: "too-deep")
        }
        return e
    }

    private init(_ text: String, base: SourcePosition) throws(ExpressionError) {
        self.base = base
        self.source = text
        tokens = try ExpressionParser.lex(Array(text.unicodeScalars), base: base)
        if tokens.count > FlowLimits.maxExpressionTokens {
            throw ExpressionError(message: "this expression has more than \(FlowLimits.maxExpressionTokens) parts", location: base, code: "too-large")
        }
    }

    /// Enters one level of nesting, refusing past the limit with a located `too-deep`.
    private mutating func descend() throws(ExpressionError) {
        depth += 1
        if depth > FlowLimits.maxExpressionDepth {
            throw ExpressionError(message: "brackets, parentheses or 'not's are nested more than \(FlowLimits.maxExpressionDepth) deep here",
                                  location: here, code: "too-deep")
        }
    }

    private var peek: Token { tokens[position].0 }
    private var here: SourcePosition { base.advanced(by: tokens[position].1) }

    private func error(_ message: String) -> ExpressionError { ExpressionError(message: message, location: here) }

    private func describe(_ t: Token) -> String {
        switch t {
        case .number(let n): "number \(Value.formatNumber(n))"
        case .string: "text"
        case .identifier(let s): "'\(s)'"
        case .symbol(let s): "'\(s)'"
        case .end: "end of expression"
        }
    }

    private mutating func advance() -> Token {
        let t = peek
        if position < tokens.count - 1 { position += 1 }
        return t
    }

    private mutating func expect(_ symbol: String) throws(ExpressionError) {
        guard peek == .symbol(symbol) else { throw error("expected '\(symbol)' but found \(describe(peek))") }
        _ = advance()
    }

    private static let keywords: Set<String> = ["and", "or", "not", "in", "matches", "true", "false", "null"]

    private static func lex(_ s: [Unicode.Scalar], base: SourcePosition) throws(ExpressionError) -> [(Token, Int)] {
        var out: [(Token, Int)] = []
        var i = 0
        func isIdentStart(_ c: Unicode.Scalar) -> Bool { c == "_" || c.properties.isAlphabetic }
        func isIdent(_ c: Unicode.Scalar) -> Bool { isIdentStart(c) || ("0"..."9").contains(c) }
        while i < s.count {
            let c = s[i]
            if c == " " || c == "\t" || c == "\n" || c == "\r" { i += 1; continue }
            let start = i
            if ("0"..."9").contains(c) {
                while i < s.count, ("0"..."9").contains(s[i]) || s[i] == "." { i += 1 }
                let text = String(String.UnicodeScalarView(s[start..<i]))
                guard let n = Double(text) else {
                    throw ExpressionError(message: "'\(text)' is not a number", location: base.advanced(by: start))
                }
                out.append((.number(n), start))
            } else if c == "\"" || c == "'" {
                i += 1
                var text = String.UnicodeScalarView()
                while i < s.count, s[i] != c {
                    if s[i] == "\\", i + 1 < s.count {
                        i += 1
                        switch s[i] {
                        case "n": text.append("\n")
                        case "t": text.append("\t")
                        default: text.append(s[i])
                        }
                    } else {
                        text.append(s[i])
                    }
                    i += 1
                }
                guard i < s.count else {
                    throw ExpressionError(message: "text starting here is never closed with \(c)", location: base.advanced(by: start))
                }
                i += 1
                out.append((.string(String(text)), start))
            } else if isIdentStart(c) {
                while i < s.count, isIdent(s[i]) { i += 1 }
                out.append((.identifier(String(String.UnicodeScalarView(s[start..<i]))), start))
            } else {
                let two = i + 1 < s.count ? String(String.UnicodeScalarView([c, s[i + 1]])) : ""
                if ["==", "!=", "<=", ">=", "??", "&&", "||"].contains(two) {
                    if two == "&&" || two == "||" {
                        throw ExpressionError(message: "write '\(two == "&&" ? "and" : "or")' instead of '\(two)'",
                                              location: base.advanced(by: start))
                    }
                    out.append((.symbol(two), start))
                    i += 2
                } else if "+-*/%<>()[]{}.,:!".unicodeScalars.contains(c) {
                    if c == "!" {
                        throw ExpressionError(message: "write 'not' instead of '!'", location: base.advanced(by: start))
                    }
                    out.append((.symbol(String(c)), start))
                    i += 1
                } else if c == "=" {
                    throw ExpressionError(message: "'=' is not an operator; compare with '=='", location: base.advanced(by: start))
                } else {
                    throw ExpressionError(message: "unexpected character '\(c)'", location: base.advanced(by: start))
                }
            }
        }
        out.append((.end, s.count))
        return out
    }

    private enum Infix {
        case binary(BinaryOperator), and, or, coalesce
    }

    private func infix(_ t: Token) -> (Infix, Int)? {
        switch t {
        case .identifier("or"): (.or, 1)
        case .identifier("and"): (.and, 2)
        case .symbol("=="): (.binary(.equal), 4)
        case .symbol("!="): (.binary(.notEqual), 4)
        case .symbol("<"): (.binary(.less), 4)
        case .symbol("<="): (.binary(.lessOrEqual), 4)
        case .symbol(">"): (.binary(.greater), 4)
        case .symbol(">="): (.binary(.greaterOrEqual), 4)
        case .identifier("in"): (.binary(.contains), 4)
        case .identifier("matches"): (.binary(.matches), 4)
        case .symbol("??"): (.coalesce, 5)
        case .symbol("+"): (.binary(.add), 6)
        case .symbol("-"): (.binary(.subtract), 6)
        case .symbol("*"): (.binary(.multiply), 7)
        case .symbol("/"): (.binary(.divide), 7)
        case .symbol("%"): (.binary(.remainder), 7)
        default: nil
        }
    }

    private mutating func expression(_ minPrecedence: Int) throws(ExpressionError) -> Expr {
        try descend()
        defer { depth -= 1 }
        var left = try prefix()
        while let (op, prec) = infix(peek), prec > minPrecedence {
            let loc = here
            _ = advance()
            let right = try expression(prec)
            switch op {
            case .binary(let b): left = .binary(b, left, right, loc)
            case .and: left = .and(left, right, loc)
            case .or: left = .or(left, right, loc)
            case .coalesce: left = .coalesce(left, right, loc)
            }
        }
        return left
    }

    private mutating func prefix() throws(ExpressionError) -> Expr {
        let loc = here
        switch peek {
        case .identifier("not"):
            _ = advance()
            return .unary(.not, try expression(3), loc)
        case .symbol("-"):
            _ = advance()
            return .unary(.negate, try postfix(try primary()), loc)
        default:
            return try postfix(try primary())
        }
    }

    private mutating func primary() throws(ExpressionError) -> Expr {
        let loc = here
        let t = advance()
        switch t {
        case .number(let n): return .literal(.number(n), loc)
        case .string(let s): return .literal(.string(s), loc)
        case .identifier("true"): return .literal(.bool(true), loc)
        case .identifier("false"): return .literal(.bool(false), loc)
        case .identifier("null"): return .literal(.null, loc)
        case .identifier(let name) where !ExpressionParser.keywords.contains(name):
            if peek == .symbol("(") {
                _ = advance()
                var args: [Expr] = []
                if peek != .symbol(")") {
                    repeat {
                        if peek == .symbol(",") { _ = advance() }
                        args.append(try expression(0))
                    } while peek == .symbol(",")
                }
                try expect(")")
                return .call(name, args, loc)
            }
            return .variable(name, loc)
        case .symbol("("):
            let e = try expression(0)
            try expect(")")
            return e
        case .symbol("["):
            var items: [Expr] = []
            if peek != .symbol("]") {
                repeat {
                    if peek == .symbol(",") { _ = advance() }
                    items.append(try expression(0))
                } while peek == .symbol(",")
            }
            try expect("]")
            return .list(items, loc)
        case .symbol("{"):
            var pairs: [(String, Expr)] = []
            if peek != .symbol("}") {
                repeat {
                    if peek == .symbol(",") { _ = advance() }
                    let key: String
                    switch advance() {
                    case .identifier(let k), .string(let k): key = k
                    default: throw error("expected a key in a map")
                    }
                    try expect(":")
                    pairs.append((key, try expression(0)))
                } while peek == .symbol(",")
            }
            try expect("}")
            return .map(pairs, loc)
        case .end:
            throw ExpressionError(message: "expected a value but the expression ended", location: loc)
        default:
            throw ExpressionError(message: "expected a value but found \(describe(t))", location: loc)
        }
    }

    private mutating func postfix(_ e: Expr) throws(ExpressionError) -> Expr {
        var e = e
        var chain = 0
        while true {
            chain += 1
            if chain > FlowLimits.maxExpressionDepth {
                throw ExpressionError(message: "more than \(FlowLimits.maxExpressionDepth) '.' and '[…]' in a row", location: here, code: "too-deep")
            }
            let loc = here
            if peek == .symbol(".") {
                _ = advance()
                guard case .identifier(let name) = advance() else { throw error("expected a name after '.'") }
                e = .member(e, name, loc)
            } else if peek == .symbol("[") {
                _ = advance()
                let i = try expression(0)
                try expect("]")
                e = .index(e, i, loc)
            } else {
                return e
            }
        }
    }
}

enum TemplateParser {
    /// Splits `text` at `{{ ... }}`; `base` is where the text starts and `columnOffset` maps characters to columns.
    /// `continuationColumn` is where lines after the first start (a block scalar's indentation).
    static func parse(_ text: String, at base: SourcePosition, continuationColumn: Int = 1) throws(ExpressionError) -> Template {
        var parts: [Template.Part] = []
        let scalars = Array(text.unicodeScalars)
        var i = 0
        var literal = String.UnicodeScalarView()
        var line = base.line, column = base.column
        var lineAt: [(Int, Int)] = []  // (line, column) per scalar index
        lineAt.reserveCapacity(scalars.count + 1)
        for c in scalars {
            lineAt.append((line, column))
            if c == "\n" { line += 1; column = continuationColumn } else { column += 1 }
        }
        lineAt.append((line, column))
        func loc(_ k: Int) -> SourcePosition { SourcePosition(line: lineAt[k].0, column: lineAt[k].1) }

        while i < scalars.count {
            if scalars[i] == "{", i + 1 < scalars.count, scalars[i + 1] == "{" {
                var j = i + 2
                while j + 1 < scalars.count, !(scalars[j] == "}" && scalars[j + 1] == "}") { j += 1 }
                guard j + 1 < scalars.count else {
                    throw ExpressionError(message: "'{{' is never closed with '}}'", location: loc(i))
                }
                if !literal.isEmpty { parts.append(.text(String(literal))); literal = .init() }
                let inner = String(String.UnicodeScalarView(scalars[(i + 2)..<j]))
                guard !inner.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw ExpressionError(message: "empty '{{ }}'", location: loc(i))
                }
                parts.append(.expr(try ExpressionParser.parse(inner, at: loc(i + 2))))
                i = j + 2
            } else {
                literal.append(scalars[i])
                i += 1
            }
        }
        if !literal.isEmpty { parts.append(.text(String(literal))) }
        return Template(parts: parts, location: base)
    }
}

import Foundation
