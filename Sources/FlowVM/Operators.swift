import Foundation
import Synchronization

/// The semantics of the expression operators; every failure is a `FlowVMError.expression`.
enum Operators {
    /// Strings longer than this (UTF-8 bytes) are refused: bounded work per turn.
    static let maxStringBytes = 64 * 1024
    /// Lists longer than this are refused.
    static let maxListCount = 10_000
    /// Regex subjects are cut off past this many characters' worth of work.
    static let maxRegexSubject = 10_000

    static func error(_ message: String) -> FlowVMError { FlowVMError(.expression, message) }

    static func checkSize(_ s: String) throws {
        if s.utf8.count > maxStringBytes { throw FlowVMError(.valueTooLarge, "text longer than \(maxStringBytes) bytes") }
    }

    static func checkSize(_ l: [Value]) throws {
        if l.count > maxListCount { throw FlowVMError(.valueTooLarge, "list longer than \(maxListCount) items") }
    }

    static func member(_ base: Value, _ name: String) throws -> Value {
        switch base {
        case .map(let m): return m[name] ?? .null
        case .null: return .null
        default: throw error("cannot read '.\(name)' of a \(base.typeName)")
        }
    }

    static func index(_ base: Value, _ i: Value) throws -> Value {
        switch (base, i) {
        case (.null, _): return .null
        case (.list(let l), .number(let n)):
            guard n == n.rounded() else { throw error("list index \(Value.formatNumber(n)) is not a whole number") }
            let k = n < 0 ? l.count + Int(n) : Int(n)
            return k >= 0 && k < l.count ? l[k] : .null
        case (.map(let m), .string(let k)): return m[k] ?? .null
        case (.string(let s), .number(let n)):
            let chars = Array(s)
            let k = n < 0 ? chars.count + Int(n) : Int(n)
            return k >= 0 && k < chars.count ? .string(String(chars[k])) : .null
        default: throw error("cannot index a \(base.typeName) with a \(i.typeName)")
        }
    }

    static func unary(_ op: UnaryOperator, _ v: Value) throws -> Value {
        switch op {
        case .not: return .bool(!v.isTruthy)
        case .negate:
            guard case .number(let n) = v else { throw error("cannot negate a \(v.typeName)") }
            return .number(-n)
        }
    }

    /// Returns the result and the extra fuel it cost beyond one instruction.
    static func binary(_ op: BinaryOperator, _ a: Value, _ b: Value) throws -> (Value, Int) {
        switch op {
        case .add:
            switch (a, b) {
            case (.number(let x), .number(let y)): return (.number(x + y), 0)
            case (.string, _), (_, .string):
                let s = a.text + b.text
                try checkSize(s)
                return (.string(s), s.utf8.count / 256)
            case (.list(let x), .list(let y)):
                try checkSize(x + y)
                return (.list(x + y), (x.count + y.count) / 64)
            default: throw error("cannot add a \(a.typeName) and a \(b.typeName)")
            }
        case .subtract, .multiply, .divide, .remainder:
            guard case .number(let x) = a, case .number(let y) = b else {
                throw error("'\(op.symbol)' needs numbers, got a \(a.typeName) and a \(b.typeName)")
            }
            switch op {
            case .subtract: return (.number(x - y), 0)
            case .multiply: return (.number(x * y), 0)
            case .divide:
                guard y != 0 else { throw error("division by zero") }
                return (.number(x / y), 0)
            default:
                guard y != 0 else { throw error("remainder of division by zero") }
                return (.number(x.truncatingRemainder(dividingBy: y)), 0)
            }
        case .equal: return (.bool(a == b), 0)
        case .notEqual: return (.bool(a != b), 0)
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            let order: Int
            switch (a, b) {
            case (.number(let x), .number(let y)): order = x < y ? -1 : (x == y ? 0 : 1)
            case (.string(let x), .string(let y)): order = x < y ? -1 : (x == y ? 0 : 1)
            default: throw error("cannot compare a \(a.typeName) with a \(b.typeName) using '\(op.symbol)'")
            }
            switch op {
            case .less: return (.bool(order < 0), 0)
            case .lessOrEqual: return (.bool(order <= 0), 0)
            case .greater: return (.bool(order > 0), 0)
            default: return (.bool(order >= 0), 0)
            }
        case .contains:
            switch b {
            case .list(let l): return (.bool(l.contains(a)), l.count / 64)
            case .string(let s): return (.bool(s.contains(a.text)), s.utf8.count / 256)
            case .map(let m): return (.bool(m[a.text] != nil), 0)
            case .null: return (.bool(false), 0)
            default: throw error("'in' needs a list, text or map on the right, got a \(b.typeName)")
            }
        case .matches:
            guard case .string(let pattern) = b else { throw error("'matches' needs a text pattern") }
            let (matched, reports) = try regexMatch(a.text, pattern)
            return (.bool(matched), a.text.utf8.count / 64 + reports / 16)
        }
    }

    /// How long one match may run. ICU calls back at every start position it tries and about every 10,000 steps
    /// of its matcher, and a match still running past this is stopped: linear patterns on the longest subject take
    /// well under a millisecond; one that backtracks exponentially (`(x+x+)+y`) or quadratically on a long reply
    /// (`.*@.*` on 10,000 characters) meets the budget instead of holding a core.
    static let regexBudget: Duration = .milliseconds(25)

    /// Whether `pattern` finds a match in `subject`, and how many progress calls it took (the VM charges them as
    /// fuel); throws when the pattern is invalid or the match ran past its budget.
    static func regexMatch(_ subject: String, _ pattern: String, budget: Duration = regexBudget) throws -> (matched: Bool, cost: Int) {
        guard subject.utf16.count <= maxRegexSubject else { throw error("text too long to match a pattern against") }
        guard let re = compiledPattern(pattern) else {
            throw error("invalid pattern '\(pattern.prefix(60))'")
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: budget)
        var matched = false, reports = 0, exhausted = false
        re.enumerateMatches(in: subject, options: [.reportProgress], range: NSRange(subject.startIndex..., in: subject)) { result, _, stop in
            if result != nil {
                matched = true
                stop.pointee = true
                return
            }
            reports += 1
            if clock.now > deadline {
                exhausted = true
                stop.pointee = true
            }
        }
        if exhausted && !matched {
            throw FlowVMError(.expression, "the pattern '\(pattern.prefix(60))' took longer than its budget to match this text")
        }
        return (matched, reports)
    }

    static func regexMatches(_ subject: String, _ pattern: String) throws -> Bool {
        try regexMatch(subject, pattern).matched
    }

    /// Compiled patterns, shared by every VM: a flow's patterns are few and compiling one costs far more than
    /// matching it. Bounded, since patterns can be computed.
    private static let patterns = Mutex<[String: NSRegularExpression]>([:])

    static func compiledPattern(_ pattern: String) -> NSRegularExpression? {
        if let cached = patterns.withLock({ $0[pattern] }) { return cached }
        guard let re = try? NSRegularExpression(pattern: pattern) else { return nil }
        patterns.withLock { cache in
            if cache.count >= 512 { cache.removeAll(keepingCapacity: true) }
            cache[pattern] = re
        }
        return re
    }
}
