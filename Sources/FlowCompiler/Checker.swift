import FlowVM
import Foundation

/// The semantic checks that run on a parsed flow: references, reachability, variables and types, loops
/// that never wait, WhatsApp limits, durations, and connector actions against their schemas.
struct Checker {
    typealias ValueType = Builtin.ValueType

    static let builtinTypes: [String: ValueType] = [
        "contact": .map, "conversation": .map, "channel": .any, "error": .map, "message": .map,
    ]

    /// WhatsApp Cloud API limits for interactive messages.
    let file: String
    let ast: FlowAST
    let catalog: ActionCatalog
    var diagnostics: [Diagnostic] = []
    /// Every variable's type: built-ins, declared, and those assigned by `save` and `set`.
    var types: [String: ValueType] = Checker.builtinTypes
    private var block: String?

    init(file: String, ast: FlowAST, catalog: ActionCatalog) {
        self.file = file
        self.ast = ast
        self.catalog = catalog
    }

    private mutating func report(_ severity: Diagnostic.Severity, _ code: String, _ message: String, at l: SourcePosition,
                                 hint: String? = nil) {
        diagnostics.append(Diagnostic(severity, code, message, file: file, at: l, block: block, hint: hint))
    }

    /// Runs every check; `priorErrors` says whether parsing already found errors, in which case the
    /// reachability warning is skipped: it would mostly echo those errors.
    mutating func run(priorErrors: Bool) {
        checkStructure()
        let structureErrors = diagnostics.contains { $0.severity == .error }
        collectVariables()
        for b in ast.blocks {
            block = b.id
            checkBlock(b)
        }
        block = nil
        checkUnassigned()
        if !priorErrors && !structureErrors && ast.brokenBlocks.isEmpty { checkReachability() }
        checkSpinLoops()
    }

    // MARK: Structure and references

    /// "Did you mean" for the first few unknown blocks only: each search is bounded, and so is their number.
    private var suggestionsLeft = 20
    private mutating func suggestBlock(_ word: String, _ ids: [String]) -> String? {
        guard suggestionsLeft > 0 else { return nil }
        suggestionsLeft -= 1
        return Suggest.hint(word, ids)
    }

    private mutating func checkStructure() {
        let ids = ast.blocks.map(\.id)
        if let start = ast.start {
            if ast.block(start.value) == nil && !ast.brokenBlocks.contains(start.value) {
                report(.error, "unknown-block", "start block '\(start.value)' does not exist", at: start.location,
                       hint: suggestBlock(start.value, ids))
            }
        } else {
            report(.error, "missing-start", "the flow has no 'start:' block", at: ast.location,
                   hint: ast.blocks.first.map { "add `start: \($0.id)`" })
        }
        let channels = catalog.channels
        if let channel = ast.trigger?.channel, !channels.isEmpty, !channels.contains(channel.value) {
            report(.error, "unknown-channel", "unknown channel '\(channel.value)'", at: channel.location,
                   hint: Suggest.hint(channel.value, channels) ?? "channels: \(channels.joined(separator: ", "))")
        }
        // A webhook fills only variables the flow declares (as a start from the API does), never a built-in one.
        for (context, pairs) in [("trigger.webhook", ast.trigger?.webhook?.variables ?? []), ("trigger.event", ast.trigger?.event?.variables ?? [])] {
            for (name, _) in pairs {
                if Program.builtinVariables.contains(name.value) {
                    report(.error, "invalid-value", "\(context) cannot set the built-in variable '\(name.value)'", at: name.location)
                } else if !ast.variables.contains(where: { $0.name == name.value }) {
                    report(.error, "undefined-variable", "\(context) sets '\(name.value)', which is not declared in variables:", at: name.location,
                           hint: "declare it: variables: { \(name.value): string }")
                }
            }
        }
        for b in ast.blocks {
            block = b.id
            for target in b.successors where ast.block(target.value) == nil && !ast.brokenBlocks.contains(target.value) {
                report(.error, "unknown-block", "block '\(target.value)' does not exist", at: target.location,
                       hint: suggestBlock(target.value, ids))
            }
        }
        block = nil
    }

    // MARK: Variables and types

    private mutating func collectVariables() {
        for v in ast.variables { types[v.name] = v.type }
        var assigned: [String: ValueType] = [:]
        for b in ast.blocks {
            guard let save = b.save else { continue }
            let t = savedType(b)
            if let declared = ast.variables.first(where: { $0.name == save.value }) {
                block = b.id
                if !compatible(declared.type, t) {
                    report(.error, "type-mismatch", "'\(save.value)' is declared \(declared.type.rawValue) but this block saves a \(t.rawValue)",
                           at: save.location)
                }
            } else {
                assigned[save.value] = assigned[save.value].map { $0 == t ? t : .any } ?? t
            }
        }
        for b in ast.blocks {
            guard case .set(let assignments) = b.kind else { continue }
            for (name, _, _) in assignments where types[name] == nil && assigned[name] == nil { assigned[name] = .any }
        }
        for (k, v) in assigned where types[k] == nil { types[k] = v }
        block = nil
    }

    private func savedType(_ b: Block) -> ValueType {
        switch b.kind {
        case .ask(let a): a.resultType
        case .waitFor: .any
        case .action(let name, let parameters):
            if name.value == "ai.chat" {
                if case .map(let entries, _)? = parameters, entries.contains(where: { $0.0 == "extract" }) { .map } else { .string }
            } else {
                catalog[name.value].map { schemaType($0.result) } ?? .any
            }
        default: .any
        }
    }

    private func schemaType(_ schema: Value) -> ValueType {
        switch schema["type"].text {
        case "string": .string
        case "number", "integer": .number
        case "boolean": .bool
        case "array": .list
        case "object": .map
        default: .any
        }
    }

    private func compatible(_ a: ValueType, _ b: ValueType) -> Bool {
        a == .any || b == .any || a == b || a == .null || b == .null
    }

    private mutating func checkUnassigned() {
        // What the flow's webhook or event fills counts as assigned.
        var assigned = Set((ast.trigger?.webhook?.variables ?? []).map(\.name.value) + (ast.trigger?.event?.variables ?? []).map(\.name.value))
        for b in ast.blocks {
            if let s = b.save { assigned.insert(s.value) }
            if case .set(let a) = b.kind { for (n, _, _) in a { assigned.insert(n) } }
        }
        var used = Set<String>()
        for b in ast.blocks {
            var refs: [(String, SourcePosition)] = []
            for e in expressions(of: b) { e.variables(into: &refs) }
            for (n, _) in refs { used.insert(n) }
        }
        for v in ast.variables where v.defaultValue == nil && !assigned.contains(v.name) && used.contains(v.name) {
            report(.warning, "unassigned-variable", "variable '\(v.name)' is used but never assigned, so it is always null",
                   at: v.location, hint: "save a reply into it, set it, or give it a default")
        }
    }

    /// Every expression in a block, for variable-use analysis.
    private func expressions(of b: Block) -> [Expr] {
        var out: [Expr] = b.next.compactMap(\.when)
        func template(_ t: Template?) {
            guard let t else { return }
            for case .expr(let e) in t.parts { out.append(e) }
        }
        switch b.kind {
        case .text(let t): template(t)
        case .ask(let a):
            template(a.prompt)
            template(a.invalid)
        case .wait(.until(let t, _)): template(t)
        case .waitFor(let w): out.append(w.match)
        case .handoff(_, let m): template(m)
        case .action(_, let p): if let p { out.append(Lowering.paramExpr(p)) }
        case .set(let a): out += a.map(\.2)
        case .contact(let e): out.append(e)
        case .end(let m): template(m)
        default: break
        }
        return out
    }

    /// Type-checks an expression, reporting mistakes; returns its static type.
    @discardableResult
    mutating func type(_ e: Expr) -> ValueType {
        switch e {
        case .literal(let v, _):
            switch v {
            case .null: return .null
            case .bool: return .bool
            case .number: return .number
            case .string: return .string
            case .list: return .list
            case .map: return .map
            }
        case .variable(let name, let l):
            if let t = types[name] { return t }
            let known = Array(types.keys)
            report(.error, "undefined-variable", "'\(name)' is not a variable of this flow", at: l,
                   hint: Suggest.hint(name, known).map { $0 + " (to write text, put it in quotes: '\(name)')" }
                       ?? "declare it under variables:, save a reply into it, or quote text: '\(name)'")
            return .any
        case .member(let base, let name, let l):
            let t = type(base)
            if t != .map, t != .any, t != .null {
                report(.error, "type-mismatch", "cannot read '.\(name)' of a \(t.rawValue)", at: l)
            }
            return .any
        case .index(let base, let i, let l):
            let t = type(base), it = type(i)
            switch (t, it) {
            case (.list, .number), (.list, .any), (.map, .string), (.map, .any), (.string, .number), (.string, .any),
                 (.any, _), (.null, _):
                break
            default:
                report(.error, "type-mismatch", "cannot index a \(t.rawValue) with a \(it.rawValue)", at: l)
            }
            return t == .string ? .string : .any
        case .unary(let op, let x, let l):
            let t = type(x)
            if op == .negate {
                if t != .number, t != .any { report(.error, "type-mismatch", "cannot negate a \(t.rawValue)", at: l) }
                return .number
            }
            return .bool
        case .binary(let op, let a, let b, let l):
            return binaryType(op, type(a), type(b), a, b, l)
        case .and(let a, let b, _), .or(let a, let b, _):
            type(a)
            type(b)
            return .bool
        case .coalesce(let a, let b, _):
            let ta = type(a), tb = type(b)
            return ta == .any || ta == .null ? tb : ta
        case .call(let name, let args, let l):
            return callType(name, args, l)
        case .list(let items, _):
            for i in items { type(i) }
            return .list
        case .map(let pairs, _):
            for (_, v) in pairs { type(v) }
            return .map
        case .concat(let parts, _):
            for p in parts { type(p) }
            return .string
        }
    }

    private mutating func binaryType(_ op: BinaryOperator, _ ta: ValueType, _ tb: ValueType, _ a: Expr, _ b: Expr,
                                     _ l: SourcePosition) -> ValueType {
        func concrete(_ t: ValueType) -> Bool { t != .any }
        switch op {
        case .add:
            if ta == .string || tb == .string { return .string }
            if ta == .number, tb == .number { return .number }
            if ta == .list, tb == .list { return .list }
            if concrete(ta), concrete(tb) {
                report(.error, "type-mismatch", "cannot add a \(ta.rawValue) and a \(tb.rawValue)", at: l)
            }
            return ta == .any ? tb == .number ? .any : tb : ta
        case .subtract, .multiply, .divide, .remainder:
            for t in [ta, tb] where t != .number && t != .any {
                report(.error, "type-mismatch", "'\(op.symbol)' needs numbers, not a \(t.rawValue)", at: l,
                       hint: t == .string ? "convert text with parse_number(...)" : nil)
                break
            }
            if op == .divide || op == .remainder, case .literal(.number(0), _) = b {
                report(.error, "division-by-zero", "division by zero", at: l)
            }
            return .number
        case .equal, .notEqual:
            if concrete(ta), concrete(tb), ta != tb, ta != .null, tb != .null {
                report(.warning, "comparison-type", "comparing a \(ta.rawValue) with a \(tb.rawValue) is never equal", at: l,
                       hint: ta == .number || tb == .number ? "convert text with parse_number(...) first" : nil)
            }
            return .bool
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            let ok = (ta == tb && (ta == .number || ta == .string)) || (ta == .any && tb != .bool) || (tb == .any && ta != .bool)
            if !ok {
                report(.error, "type-mismatch", "cannot compare a \(ta.rawValue) with a \(tb.rawValue) using '\(op.symbol)'", at: l,
                       hint: ta == .string || tb == .string ? "convert text with parse_number(...) first" : nil)
            }
            return .bool
        case .contains:
            if ![ValueType.list, .string, .map, .any, .null].contains(tb) {
                report(.error, "type-mismatch", "'in' needs a list, text or map on the right, not a \(tb.rawValue)", at: l)
            }
            return .bool
        case .matches:
            if tb != .string, tb != .any {
                report(.error, "type-mismatch", "'matches' needs a text pattern on the right", at: l)
            }
            if case .literal(.string(let p), let pl) = b, let problem = PatternCheck.problem(p) {
                report(.error, problem.code, problem.message, at: pl)
            }
            return .bool
        }
    }

    private mutating func callType(_ name: String, _ args: [Expr], _ l: SourcePosition) -> ValueType {
        let argTypes = args.map { type($0) }
        guard let f = Builtin.named(name) else {
            report(.error, "unknown-function", "there is no function '\(name)'", at: l,
                   hint: Suggest.hint(name, Builtin.allCases.map(\.name))
                       ?? "functions: \(Builtin.allCases.map(\.name).joined(separator: ", "))")
            return .any
        }
        let sig = f.signature
        let minArgs = sig.parameters.count - sig.optional
        if args.count < minArgs || args.count > sig.parameters.count {
            let expected = minArgs == sig.parameters.count ? "\(minArgs)" : "\(minArgs) to \(sig.parameters.count)"
            report(.error, "wrong-arity", "\(name)() takes \(expected) argument(s), got \(args.count)", at: l)
            return sig.result
        }
        for (i, (p, t)) in zip(sig.parameters, argTypes).enumerated() where p != .any && t != .any && t != .null && p != t {
            // Numbers and booleans print as text, so text parameters accept them.
            if p == .string, t == .number || t == .bool { continue }
            report(.error, "type-mismatch", "argument \(i + 1) of \(name)() must be a \(p.rawValue), not a \(t.rawValue)", at: args[i].location)
        }
        // Literal arguments that can be checked now.
        func literal(_ i: Int) -> (String, SourcePosition)? {
            guard i < args.count, case .literal(.string(let s), let l) = args[i] else { return nil }
            return (s, l)
        }
        switch f {
        case .parseDate, .formatDate:
            if let (tz, tl) = literal(2), TimeZone(identifier: tz) == nil {
                report(.error, "unknown-timezone", "unknown time zone '\(tz)'", at: tl,
                       hint: "use an IANA name such as America/Sao_Paulo or Europe/Lisbon")
            }
        case .dateAdd:
            if let (d, dl) = literal(1), DurationParser.seconds(d.hasPrefix("-") ? String(d.dropFirst()) : d) == nil {
                report(.error, "invalid-duration", "'\(d)' is not a duration", at: dl, hint: "write 30m, 2h, 1d or -1d")
            }
        default: break
        }
        return sig.result
    }

    // MARK: Blocks

    private mutating func template(_ t: Template?) {
        guard let t else { return }
        for case .expr(let e) in t.parts { type(e) }
    }

    private mutating func checkBlock(_ b: Block) {
        for branch in b.next { if let w = branch.when { type(w) } }
        switch b.kind {
        case .text(let t):
            template(t)
            checkTextLength(t)
        case .ask(let a):
            template(a.prompt)
            template(a.invalid)
            checkTextLength(a.prompt)
            checkChoices(a)
            if a.retries != nil, a.onInvalid == nil, b.onError == nil {
                report(.warning, "retries-without-exit", "after \(a.retries!) retries this ask fails the conversation",
                       at: b.location, hint: "add on_invalid: <block> to say what happens then")
            }
        case .wait(.until(let t, _)): template(t)
        case .wait: break
        case .waitFor(let w): type(w.match)
        case .handoff(_, let m): template(m)
        case .action(let name, let parameters):
            checkAction(name, parameters)
        case .set(let assignments):
            for (name, l, e) in assignments {
                let t = type(e)
                if let declared = ast.variables.first(where: { $0.name == name }), !compatible(declared.type, t) {
                    report(.error, "type-mismatch", "'\(name)' is declared \(declared.type.rawValue) but is set to a \(t.rawValue)", at: l)
                }
            }
        case .contact(let e): type(e)
        case .end(let m): template(m)
        case .condition:
            if b.next.isEmpty { report(.error, "missing-action", "block '\(b.id)' does nothing", at: b.location) }
        case .goto, .call: break
        }
    }

    private mutating func checkTextLength(_ t: Template) {
        if let s = t.constantText, s.count > WhatsApp.maxText {
            report(.error, "text-too-long", "message is \(s.count) characters; WhatsApp allows \(WhatsApp.maxText)", at: t.location)
        }
    }

    private mutating func checkChoices(_ a: Block.Ask) {
        if a.buttons.count > WhatsApp.maxButtons {
            report(.error, "too-many-buttons", "\(a.buttons.count) buttons; WhatsApp allows at most \(WhatsApp.maxButtons)",
                   at: a.buttons[WhatsApp.maxButtons].location, hint: "use a list: for up to \(WhatsApp.maxRows) options")
        }
        for c in a.buttons where c.title.count > WhatsApp.maxButtonTitle {
            report(.error, "button-too-long", "button '\(c.title)' has \(c.title.count) characters; WhatsApp allows \(WhatsApp.maxButtonTitle)",
                   at: c.location)
        }
        if a.rows.count > WhatsApp.maxRows {
            report(.error, "too-many-rows", "\(a.rows.count) list rows; WhatsApp allows at most \(WhatsApp.maxRows)",
                   at: a.rows[WhatsApp.maxRows].location)
        }
        for c in a.rows {
            if c.title.count > WhatsApp.maxRowTitle {
                report(.error, "row-title-too-long", "row title '\(c.title)' has \(c.title.count) characters; WhatsApp allows \(WhatsApp.maxRowTitle)",
                       at: c.location, hint: "put the detail in the row's description (up to \(WhatsApp.maxRowDescription))")
            }
            if let d = c.description, d.count > WhatsApp.maxRowDescription {
                report(.error, "row-title-too-long", "row description has \(d.count) characters; WhatsApp allows \(WhatsApp.maxRowDescription)",
                       at: c.location)
            }
        }
        if let lb = a.listButton, lb.count > WhatsApp.maxListButton {
            report(.error, "button-too-long", "list button '\(lb)' has \(lb.count) characters; WhatsApp allows \(WhatsApp.maxListButton)",
                   at: a.prompt.location)
        }
        var seen = Set<String>()
        for c in a.buttons + a.rows where !seen.insert(c.id.lowercased()).inserted {
            report(.error, "duplicate-choice", "choice '\(c.id)' appears twice", at: c.location)
        }
    }

    // MARK: Connector actions

    private mutating func checkAction(_ name: Located<String>, _ parameters: ParamValue?) {
        guard let action = catalog[name.value] else {
            report(.error, "unknown-action", "unknown connector action '\(name.value)'", at: name.location,
                   hint: Suggest.hint(name.value, catalog.actions.keys) ?? "actions: \(catalog.actions.keys.sorted().joined(separator: ", "))")
            if let parameters { type(Lowering.paramExpr(parameters)) }
            return
        }
        guard let parameters else { return }
        type(Lowering.paramExpr(parameters))
        let owner = name.value == "ai.chat" ? "ai" : name.value == "http.request" ? "webhook" : name.value
        checkParameter(parameters, schema: action.parameters, owner: owner, path: "")
    }

    private func paramType(_ p: ParamValue) -> ValueType {
        switch p {
        case .literal(let v, _):
            switch v {
            case .null: return .null
            case .bool: return .bool
            case .number: return .number
            case .string: return .string
            case .list: return .list
            case .map: return .map
            }
        case .template(let t):
            if t.parts.count == 1, case .expr(let e) = t.parts[0] {
                var copy = self
                return copy.type(e)
            }
            return .string
        case .list: return .list
        case .map: return .map
        }
    }

    private func article(_ word: String) -> String {
        (word.first.map { "aeiou".contains($0) } ?? false) ? "an \(word)" : "a \(word)"
    }

    private mutating func checkParameter(_ p: ParamValue, schema: Value, owner: String, path: String) {
        let expected = schemaType(schema)
        let actual = paramType(p)
        let name = "\(owner): '\(path)'"
        if expected != .any, actual != .any, actual != .null, expected != actual {
            report(.error, "invalid-parameter", "\(name) must be \(article(schema["type"].text)), not \(article(actual.rawValue))", at: p.location)
            return
        }
        switch p {
        case .literal(.string(let s), let l):
            if case .list(let options) = schema["enum"], !options.contains(.string(s)) {
                report(.error, "invalid-parameter", "\(name) must be one of \(options.map(\.text).joined(separator: ", ")), not '\(s)'", at: l,
                       hint: Suggest.hint(s, options.map(\.text)))
            }
            if case .number(let min) = schema["minLength"], Double(s.count) < min {
                report(.error, "invalid-parameter", "\(name) must have at least \(Value.formatNumber(min)) characters", at: l)
            }
            if case .number(let max) = schema["maxLength"], Double(s.count) > max {
                report(.error, "invalid-parameter", "\(name) must have at most \(Value.formatNumber(max)) characters", at: l)
            }
            if schema["format"].text == "duration", DurationParser.seconds(s) == nil {
                report(.error, "invalid-duration", "\(name): '\(s)' is not a duration", at: l, hint: "write 10s, 5m or 1h")
            }
        case .literal(.number(let n), let l):
            if case .number(let min) = schema["minimum"], n < min {
                report(.error, "invalid-parameter", "\(name) must be at least \(Value.formatNumber(min))", at: l)
            }
            if case .number(let max) = schema["maximum"], n > max {
                report(.error, "invalid-parameter", "\(name) must be at most \(Value.formatNumber(max))", at: l)
            }
            if schema["type"].text == "integer", n != n.rounded() {
                report(.error, "invalid-parameter", "\(name) must be a whole number", at: l)
            }
        case .map(let entries, let l):
            let properties = schema["properties"]
            if case .list(let required) = schema["required"] {
                for r in required where !entries.contains(where: { $0.0 == r.text }) {
                    report(.error, "missing-parameter", "\(owner) needs '\(path.isEmpty ? r.text : path + "." + r.text)'", at: l)
                }
            }
            for (key, kl, value) in entries {
                if case .map(let props) = properties, let sub = props[key] {
                    checkParameter(value, schema: sub, owner: owner, path: path.isEmpty ? key : "\(path).\(key)")
                } else if schema["additionalProperties"] == .bool(false) {
                    var known: [String] = []
                    if case .map(let props) = properties { known = Array(props.keys).sorted() }
                    report(.error, "unknown-parameter", "\(owner) has no parameter '\(path.isEmpty ? key : path + "." + key)'", at: kl,
                           hint: Suggest.hint(key, known) ?? "parameters: \(known.joined(separator: ", "))")
                }
            }
        case .list(let items, _):
            if schema["items"] != .null {
                for (i, item) in items.enumerated() { checkParameter(item, schema: schema["items"], owner: owner, path: "\(path)[\(i)]") }
            }
        default: break
        }
    }

    // MARK: Graph

    private mutating func checkReachability() {
        guard let start = ast.start?.value, ast.block(start) != nil else { return }
        var seen: Set<String> = [start]
        var queue = [start]
        while let id = queue.popLast() {
            for s in ast.block(id)?.successors ?? [] where ast.block(s.value) != nil && seen.insert(s.value).inserted {
                queue.append(s.value)
            }
        }
        for b in ast.blocks where !seen.contains(b.id) {
            block = b.id
            report(.warning, "unreachable-block", "block '\(b.id)' is never reached from '\(start)'", at: b.location,
                   hint: "point a next:, goto: or branch at it, or delete it")
        }
        block = nil
    }

    /// Tarjan's algorithm with an explicit stack, so a flow of thousands of chained blocks costs memory, not the
    /// thread's stack.
    static func stronglyConnectedComponents(_ edges: [[Int]]) -> [[Int]] {
        let n = edges.count
        var order = Array(repeating: -1, count: n), low = order, onStack = Array(repeating: false, count: n)
        var stack: [Int] = [], counter = 0
        var components: [[Int]] = []
        // Each frame is a vertex and how many of its edges have been followed.
        var frames: [(v: Int, next: Int)] = []
        for root in 0..<n where order[root] < 0 {
            frames.append((root, 0))
            order[root] = counter; low[root] = counter; counter += 1
            stack.append(root); onStack[root] = true
            while let (v, next) = frames.last {
                if next < edges[v].count {
                    frames[frames.count - 1].next += 1
                    let w = edges[v][next]
                    if order[w] < 0 {
                        order[w] = counter; low[w] = counter; counter += 1
                        stack.append(w); onStack[w] = true
                        frames.append((w, 0))
                    } else if onStack[w] {
                        low[v] = min(low[v], order[w])
                    }
                    continue
                }
                frames.removeLast()
                if let parent = frames.last { low[parent.v] = min(low[parent.v], low[v]) }
                if low[v] == order[v] {
                    var component: [Int] = []
                    while let w = stack.popLast() {
                        onStack[w] = false
                        component.append(w)
                        if w == v { break }
                    }
                    components.append(component)
                }
            }
        }
        return components
    }

    /// A cycle through blocks none of which waits would spin forever within one turn: Tarjan's SCCs over
    /// the non-waiting blocks.
    private mutating func checkSpinLoops() {
        let nodes = ast.blocks.filter { !$0.waits }
        let index = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { ($1.id, $0) })
        var edges = nodes.map { b in b.successors.compactMap { index[$0.value] } }
        // `on_error` runs only when the block failed, which is no loop by itself; the budget bounds a failing retry loop.
        for (i, b) in nodes.enumerated() { if let e = b.onError, let j = index[e.value] { edges[i].removeAll { $0 == j } } }
        let components = Checker.stronglyConnectedComponents(edges)
        for c in components where c.count > 1 || edges[c[0]].contains(c[0]) {
            let members = c.sorted().map { nodes[$0] }
            let first = members[0]
            block = first.id
            let path = (members.map(\.id) + [first.id]).joined(separator: " → ")
            report(.error, "spin-loop", "blocks \(path) loop without waiting for anything, so the flow would spin",
                   at: first.location, hint: "put an ask, wait, wait_for or handoff block inside the loop")
        }
        block = nil
    }
}
