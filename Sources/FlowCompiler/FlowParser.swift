import FlowVM

/// Turns the located YAML/JSON tree into a `FlowAST`, reporting every shape mistake it finds and going on.
struct FlowParser {
    /// `layout` holds the builder's node positions; the compiler ignores it.
    static let topLevelKeys = ["flow", "description", "trigger", "variables", "start", "blocks", "debounce", "whatsapp_template", "layout"]
    /// The keys that say what a block does; exactly one (or none, with `next:`, for a condition). From `BlockTypes`.
    static let actionKeys = BlockTypes.actionKeys
    static let blockKeys = BlockTypes.keys
    static var allBlockKeys: Set<String> { Set(blockKeys.values.joined()) }
    static let valueTypes: [String: Builtin.ValueType] = [
        "string": .string, "text": .string, "number": .number, "integer": .number, "bool": .bool, "boolean": .bool,
        "list": .list, "map": .map, "any": .any, "date": .string,
    ]

    let file: String
    var diagnostics: [Diagnostic] = []
    private var block: String?

    init(file: String) { self.file = file }

    private mutating func error(_ code: String, _ message: String, at l: SourcePosition, hint: String? = nil) {
        diagnostics.append(Diagnostic(.error, code, message, file: file, at: l, block: block, hint: hint))
    }

    // MARK: Scalars

    private mutating func string(_ node: SourceNode, _ what: String) -> Located<String>? {
        guard let s = node.scalar else {
            error("invalid-value", "\(what) must be text, not \(node.kindName)", at: node.location)
            return nil
        }
        return Located(value: s.text, location: s.location)
    }

    private mutating func int(_ node: SourceNode, _ what: String, range: ClosedRange<Int>) -> Int? {
        guard let s = node.scalar, let n = Int(s.text), range.contains(n) else {
            error("invalid-value", "\(what) must be a whole number from \(range.lowerBound) to \(range.upperBound)", at: node.location)
            return nil
        }
        return n
    }

    private mutating func duration(_ node: SourceNode, _ what: String) -> Int? {
        guard let s = node.scalar else {
            error("invalid-duration", "\(what) must be a duration like 30s, 10m, 2h, 1d or 1w", at: node.location)
            return nil
        }
        guard let seconds = DurationParser.seconds(s.text), seconds > 0, seconds <= Int64(UInt32.max) else {
            error("invalid-duration", "'\(s.text)' is not a duration", at: s.location,
                  hint: "write a number and a unit: 30s, 10m, 2h, 1d, 1w, or combine them: 1h30m")
            return nil
        }
        return Int(seconds)
    }

    private mutating func template(_ node: SourceNode, _ what: String) -> Template? {
        guard let s = node.scalar else {
            error("invalid-value", "\(what) must be text, not \(node.kindName)", at: node.location)
            return nil
        }
        do {
            return try TemplateParser.parse(s.text, at: s.contentLocation, continuationColumn: s.continuationColumn)
        } catch {
            self.error(error.code ?? "expression-syntax", error.message, at: error.location)
            return nil
        }
    }

    private mutating func expression(_ node: SourceNode, _ what: String) -> Expr? {
        guard let s = node.scalar else {
            error("invalid-value", "\(what) must be an expression, not \(node.kindName)", at: node.location)
            return nil
        }
        do {
            return try ExpressionParser.parse(s.text, at: s.contentLocation)
        } catch {
            self.error(error.code ?? "expression-syntax", error.message, at: error.location)
            return nil
        }
    }

    /// A connector parameter tree. Plain scalars that read as numbers, booleans or null keep that type;
    /// all other text is a template, and a template that is just one `{{ expr }}` keeps the expression's value.
    private mutating func param(_ node: SourceNode) -> ParamValue? {
        switch node {
        case .scalar(let s):
            if !s.quoted {
                if s.text == "true" { return .literal(.bool(true), s.location) }
                if s.text == "false" { return .literal(.bool(false), s.location) }
                if s.text == "null" || s.text == "~" || s.text.isEmpty { return .literal(.null, s.location) }
                if let n = Double(s.text), s.text.first.map({ $0.isNumber || $0 == "-" }) == true {
                    return .literal(.number(n), s.location)
                }
            }
            guard let t = template(node, "a parameter") else { return nil }
            if let text = t.constantText { return .literal(.string(text), s.location) }
            return .template(t)
        case .sequence(let items, let l):
            return .list(items.compactMap { param($0) }, l)
        case .mapping(let entries, let l):
            return .map(entries.compactMap { e in param(e.value).map { (e.key, e.keyLocation, $0) } }, l)
        }
    }

    /// The value of a parameter tree without templates.
    static func constant(_ p: ParamValue) -> Value? {
        switch p {
        case .literal(let v, _): return v
        case .template: return nil
        case .list(let items, _):
            var out: [Value] = []
            for i in items {
                guard let v = constant(i) else { return nil }
                out.append(v)
            }
            return .list(out)
        case .map(let entries, _):
            var out: [String: Value] = [:]
            for (k, _, v) in entries {
                guard let c = constant(v) else { return nil }
                out[k] = c
            }
            return .map(out)
        }
    }

    private mutating func checkKeys(_ entries: [SourceNode.Entry], allowed: [String], context: String,
                                    elsewhere: Set<String> = []) {
        for e in entries where !allowed.contains(e.key) {
            if elsewhere.contains(e.key) {
                error("unknown-key", "'\(e.key)' is not allowed in \(context)", at: e.keyLocation,
                      hint: "allowed here: \(allowed.joined(separator: ", "))")
            } else {
                error("unknown-key", "unknown key '\(e.key)' in \(context)", at: e.keyLocation,
                      hint: Suggest.hint(e.key, allowed) ?? "allowed here: \(allowed.joined(separator: ", "))")
            }
        }
    }

    /// `{ name, language }`: names as WhatsApp Manager shows them (`follow_up`, `pt_BR`).
    private mutating func whatsappTemplate(_ node: SourceNode) -> (name: String, language: String)? {
        guard let entries = mapping(node, "whatsapp_template") else { return nil }
        var name: Located<String>?, language: Located<String>?
        for e in entries {
            switch e.key {
            case "name": name = string(e.value, "whatsapp_template.name")
            case "language": language = string(e.value, "whatsapp_template.language")
            default:
                error("unknown-key", "whatsapp_template has no key '\(e.key)'", at: e.keyLocation, hint: "it takes name and language")
            }
        }
        let valid: (String) -> Bool = { !$0.isEmpty && $0.count <= 512 && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") } }
        var ok = true
        for (field, value) in [("name", name), ("language", language)] {
            if let value, !valid(value.value) {
                error("invalid-value", "whatsapp_template \(field) '\(value.value.prefix(40))' may only have letters, digits and '_'", at: value.location)
                ok = false
            } else if value == nil {
                error("missing-key", "whatsapp_template needs a '\(field)'", at: node.location, hint: "for example { name: follow_up, language: pt_BR }")
                ok = false
            }
        }
        guard ok, let name, let language else { return nil }
        return (name.value, language.value)
    }

    private mutating func mapping(_ node: SourceNode, _ what: String) -> [SourceNode.Entry]? {
        guard let entries = node.entries else {
            error("invalid-value", "\(what) must be a map, not \(node.kindName)", at: node.location)
            return nil
        }
        return entries
    }

    // MARK: Document

    mutating func parse(_ root: SourceNode) -> FlowAST? {
        guard let entries = mapping(root, "a flow") else { return nil }
        var ast = FlowAST(location: root.location)
        checkKeys(entries, allowed: FlowParser.topLevelKeys, context: "the flow")
        for e in entries {
            switch e.key {
            case "flow":
                ast.name = string(e.value, "flow")
                if let n = ast.name, n.value.count > FlowLimits.maxIdentifierLength {
                    error("identifier-too-long", "the flow name is longer than \(FlowLimits.maxIdentifierLength) characters", at: n.location)
                } else if let n = ast.name, !n.value.allSatisfy({ $0.isLetter || $0.isNumber || "-_".contains($0) }) || n.value.isEmpty {
                    error("invalid-value", "flow name '\(n.value)' may only have letters, digits, '-' and '_'", at: n.location)
                }
            case "description": ast.description = string(e.value, "description")?.value
            case "trigger": ast.trigger = trigger(e.value)
            case "variables": ast.variables = variables(e.value)
            case "start": ast.start = string(e.value, "start")
            case "debounce": ast.debounce = duration(e.value, "debounce")
            case "whatsapp_template": ast.whatsappTemplate = whatsappTemplate(e.value)
            case "blocks":
                guard let blockEntries = mapping(e.value, "blocks") else { continue }
                if blockEntries.count > FlowLimits.maxBlocks {
                    error("too-large", "the flow has \(blockEntries.count) blocks; at most \(FlowLimits.maxBlocks) are allowed", at: e.keyLocation,
                          hint: "split it into several flows")
                    continue
                }
                var blocks: [Block] = []
                for b in blockEntries {
                    block = b.key
                    if let parsed = parseBlock(b) { blocks.append(parsed) } else { ast.brokenBlocks.insert(b.key) }
                    block = nil
                }
                ast.blocks = blocks  // once: assigning re-indexes the blocks by id
            default: break
            }
        }
        if ast.name == nil {
            error("missing-key", "the flow has no 'flow:' name", at: root.location, hint: "add `flow: my-flow-name` at the top")
        }
        if !entries.contains(where: { $0.key == "blocks" }) {
            error("missing-key", "the flow has no 'blocks:'", at: root.location)
        }
        return ast
    }

    private mutating func trigger(_ node: SourceNode) -> FlowAST.Trigger? {
        guard let entries = mapping(node, "trigger") else { return nil }
        checkKeys(entries, allowed: ["channel", "keywords", "webhook", "schedule", "event"], context: "trigger")
        var t = FlowAST.Trigger(channel: nil, keywords: [])
        if let w = node["webhook"] { t.webhook = webhook(w) }
        if let s = node["schedule"] { t.schedule = schedule(s) }
        if let e = node["event"] { t.event = event(e) }
        if let c = node["channel"] { t.channel = string(c, "trigger channel") }
        if let k = node["keywords"] {
            switch k {
            case .sequence(let items, _): t.keywords = items.compactMap { string($0, "a keyword")?.value }
            case .scalar(let s): t.keywords = [s.text]
            default: error("invalid-value", "keywords must be a list of words", at: k.location)
            }
        }
        return t
    }

    /// `{ address: customer.phone, name?: customer.name, variables?: { order: order.id } }`: paths into the posted
    /// JSON (names and list indexes joined by dots).
    private mutating func webhook(_ node: SourceNode) -> FlowAST.Webhook? {
        guard let entries = mapping(node, "trigger.webhook") else { return nil }
        checkKeys(entries, allowed: ["address", "name", "variables"], context: "trigger.webhook")
        var name: Located<String>?
        if let n = node["name"] { name = path(n, "trigger.webhook name") }
        let variables = node["variables"].map { pathVariables($0, "trigger.webhook") } ?? []
        // A wrong or missing address is reported and the rest still checked (the program is not made either way).
        var address = Located(value: "", location: node.location)
        if let a = node["address"] {
            if let p = path(a, "trigger.webhook address") { address = p }
        } else {
            error("missing-key", "trigger.webhook needs an 'address': where the contact's address is in the posted JSON", at: node.location,
                  hint: "for example address: customer.phone")
        }
        return FlowAST.Webhook(address: address, name: name, variables: variables)
    }

    /// A path into posted JSON: names and list indexes joined by dots.
    private mutating func path(_ n: SourceNode, _ what: String) -> Located<String>? {
        guard let p = string(n, what) else { return nil }
        guard p.value.utf8.count <= 200,
              p.value.range(of: #"^[A-Za-z_][A-Za-z0-9_-]*(\.([A-Za-z_][A-Za-z0-9_-]*|[0-9]+))*$"#, options: .regularExpression) != nil else {
            error("invalid-value", "\(what) '\(p.value.prefix(60))' is not a path into the posted JSON", at: p.location,
                  hint: "names and list indexes joined by dots: customer.phone, items.0.sku")
            return nil
        }
        return p
    }

    /// `{ order: order.id, ... }`: variables and the paths that fill them.
    private mutating func pathVariables(_ node: SourceNode, _ context: String) -> [(name: Located<String>, path: Located<String>)] {
        var variables: [(name: Located<String>, path: Located<String>)] = []
        guard let pairs = mapping(node, "\(context) variables") else { return [] }
        for e in pairs {
            if let p = path(e.value, "\(context) variable '\(e.key)'") { variables.append((Located(value: e.key, location: e.keyLocation), p)) }
        }
        return variables
    }

    /// `order.paid` or `{ name: order.paid, variables?: { total: amount } }`: the named event that starts the flow.
    private mutating func event(_ node: SourceNode) -> FlowAST.Event? {
        func named(_ n: SourceNode) -> Located<String>? {
            guard let name = string(n, "trigger.event name") else { return nil }
            guard name.value.utf8.count <= 100,
                  name.value.range(of: #"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"#, options: .regularExpression) != nil else {
                error("invalid-value", "event name '\(name.value.prefix(60))' is not names joined by dots", at: name.location,
                      hint: "for example order.paid or lead.created")
                return nil
            }
            return name
        }
        if case .scalar = node { return named(node).map { FlowAST.Event(name: $0, variables: []) } }
        guard let entries = mapping(node, "trigger.event") else { return nil }
        checkKeys(entries, allowed: ["name", "variables"], context: "trigger.event")
        guard let n = node["name"] else {
            error("missing-key", "trigger.event needs a 'name': the event that starts the flow", at: node.location, hint: "for example name: order.paid")
            return nil
        }
        let variables = node["variables"].map { pathVariables($0, "trigger.event") } ?? []
        // A bad name is reported and the variables still checked (the program is not made either way).
        return FlowAST.Event(name: named(n) ?? Located(value: "", location: n.location), variables: variables)
    }

    /// `{ cron: "0 9 * * 1-5" | [...], timezone: America/Sao_Paulo, segment: parents | contacts: [...], channel?: ch_…,
    /// missed?: run_once | skip, rate?: 5 }`.
    private mutating func schedule(_ node: SourceNode) -> FlowAST.Schedule? {
        guard let entries = mapping(node, "trigger.schedule") else { return nil }
        checkKeys(entries, allowed: ["cron", "timezone", "segment", "contacts", "channel", "missed", "rate"], context: "trigger.schedule")
        var s = FlowAST.Schedule(cron: [], timezone: "UTC", segment: nil, contacts: [], channel: nil, missed: "run_once", location: node.location)
        var zone: TimeZone?
        if let t = node["timezone"], let name = string(t, "trigger.schedule timezone") {
            zone = TimeZone(identifier: name.value)
            if zone == nil {
                error("unknown-timezone", "unknown time zone '\(name.value.prefix(60))'", at: name.location,
                      hint: "use an IANA name such as America/Sao_Paulo or Europe/Lisbon")
            }
            s.timezone = name.value
        } else if node["timezone"] == nil {
            // 09:00 in whose day? Guessing UTC would run a clinic's reminders hours off.
            error("missing-key", "trigger.schedule needs a 'timezone': the zone its times are in", at: node.location,
                  hint: "for example timezone: America/Sao_Paulo")
        }
        switch node["cron"] {
        case .sequence(let items, let l)?:
            s.cron = items.compactMap { string($0, "a cron expression") }
            if s.cron.isEmpty || s.cron.count > 10 { error("invalid-value", "cron takes one to ten expressions", at: l) }
        case let c?: if let text = string(c, "cron") { s.cron = [text] }
        case nil: error("missing-key", "trigger.schedule needs a 'cron': when it fires", at: node.location, hint: #"for example cron: "0 9 * * 1-5""#)
        }
        for c in s.cron {
            do throws(CronExpression.Invalid) {
                _ = try CronExpression(c.value, timeZone: zone ?? TimeZone(identifier: "UTC")!)
            } catch let invalid {
                error("invalid-cron", invalid.description, at: c.location, hint: "five fields: minute hour day-of-month month day-of-week")
            }
        }
        if let g = node["segment"] { s.segment = string(g, "trigger.schedule segment") }
        if let c = node["contacts"] {
            if case .sequence(let items, _) = c {
                s.contacts = items.compactMap { string($0, "a contact's address")?.value }
                if s.contacts.count > 1000 { error("invalid-value", "a fixed list holds at most 1,000 contacts; use a segment", at: c.location) }
                if s.contacts.contains(where: { $0.isEmpty || $0.utf8.count > 200 }) {
                    error("invalid-value", "a contact's address is 1–200 characters", at: c.location)
                }
            } else {
                error("invalid-value", "contacts is a list of the contacts' addresses", at: c.location)
            }
        }
        switch (s.segment != nil || node["segment"] != nil, node["contacts"] != nil) {
        case (true, true):
            error("conflicting-keys", "trigger.schedule has 'segment' or 'contacts', not both", at: node["contacts"]?.location ?? node.location)
        case (false, false):
            error("missing-key", "trigger.schedule needs a 'segment' (a segment's name) or 'contacts' (a list of addresses)", at: node.location)
        default: break
        }
        if let c = node["channel"] { s.channel = string(c, "trigger.schedule channel") }
        if let m = node["missed"], let text = string(m, "missed") {
            if ["run_once", "skip"].contains(text.value) { s.missed = text.value } else {
                error("invalid-value", "missed is run_once (one late run for the occurrences missed) or skip", at: m.location)
            }
        }
        if let r = node["rate"] {
            if case .scalar(let text) = r, let n = Double(text.text), n >= 0.01, n <= 1000 { s.rate = n } else {
                error("invalid-value", "rate is conversations started per second, from 0.01 to 1000", at: r.location)
            }
        }
        return s
    }

    private mutating func variables(_ node: SourceNode) -> [FlowAST.Variable] {
        guard let entries = mapping(node, "variables") else { return [] }
        var out: [FlowAST.Variable] = []
        for e in entries {
            if Program.builtinVariables.contains(e.key) {
                error("invalid-value", "'\(e.key)' is a built-in variable and cannot be declared", at: e.keyLocation)
                continue
            }
            var typeNode: SourceNode? = e.value
            var defaultValue: Value?
            if let m = e.value.entries {
                checkKeys(m, allowed: ["type", "default"], context: "variable '\(e.key)'")
                typeNode = e.value["type"]
                if let d = e.value["default"] {
                    defaultValue = param(d).flatMap(FlowParser.constant)
                    if defaultValue == nil { error("invalid-value", "a default must be a fixed value, without {{ }}", at: d.location) }
                }
            }
            var type: Builtin.ValueType = .any
            if let tn = typeNode, let s = string(tn, "a variable type") {
                if let t = FlowParser.valueTypes[s.value] {
                    type = t
                } else {
                    error("unknown-type", "unknown type '\(s.value)' for variable '\(e.key)'", at: s.location,
                          hint: Suggest.hint(s.value, FlowParser.valueTypes.keys) ?? "use string, number, bool, list, map or any")
                }
            }
            out.append(.init(name: e.key, type: type, defaultValue: defaultValue, location: e.keyLocation))
        }
        return out
    }

    // MARK: Blocks

    private mutating func parseBlock(_ entry: SourceNode.Entry) -> Block? {
        let id = entry.key
        if id.count > FlowLimits.maxIdentifierLength {
            error("identifier-too-long", "block id '\(id.prefix(40))…' is longer than \(FlowLimits.maxIdentifierLength) characters",
                  at: entry.keyLocation)
            return nil
        }
        if id.isEmpty || !id.allSatisfy({ $0.isLetter || $0.isNumber || "-_".contains($0) }) {
            error("invalid-value", "block id '\(id)' may only have letters, digits, '-' and '_'", at: entry.keyLocation)
        }
        guard let entries = mapping(entry.value, "block '\(id)'") else { return nil }
        let actions = entries.filter { FlowParser.actionKeys.contains($0.key) }
        if actions.count > 1 {
            error("conflicting-keys", "block '\(id)' has \(actions.map { "'\($0.key)'" }.joined(separator: " and ")); a block does one thing",
                  at: actions[1].keyLocation, hint: "split it into two blocks joined by next:")
        }
        let kind = actions.first?.key ?? "condition"
        if actions.isEmpty, entry.value["next"] == nil {
            if let e = entries.first, !FlowParser.allBlockKeys.contains(e.key) {
                error("unknown-key", "unknown key '\(e.key)' in block '\(id)'", at: e.keyLocation,
                      hint: Suggest.hint(e.key, FlowParser.actionKeys) ?? "a block needs one of: \(FlowParser.actionKeys.joined(separator: ", "))")
            } else {
                error("missing-action", "block '\(id)' does nothing", at: entry.keyLocation,
                      hint: "give it one of: \(FlowParser.actionKeys.joined(separator: ", "))")
            }
            return nil
        }
        let allowed = FlowParser.blockKeys[kind]!
        checkKeys(entries.filter { !FlowParser.actionKeys.contains($0.key) || $0.key == kind }, allowed: allowed,
                  context: kind == "condition" ? "block '\(id)'" : "a \(kind) block", elsewhere: FlowParser.allBlockKeys)

        let node = entry.value
        var b = Block(id: id, location: entry.keyLocation, kind: .condition)
        if let s = node["save"] {
            if let name = string(s, "save") {
                if !isIdentifier(name.value) {
                    error("invalid-value", "'\(name.value)' is not a variable name", at: name.location,
                          hint: "variable names are letters, digits and '_', starting with a letter")
                } else if Program.builtinVariables.contains(name.value) {
                    error("invalid-value", "'\(name.value)' is a built-in variable and cannot be saved to", at: name.location)
                } else {
                    b.save = name
                }
            }
        }
        if let n = node["next"] { b.next = branches(n) }
        if let e = node["on_error"] { b.onError = string(e, "on_error") }
        if let m = node["on_message"] { b.onMessage = string(m, "on_message") }

        let primary = node[kind]
        switch kind {
        case "text":
            guard let t = template(primary!, "text") else { return nil }
            b.kind = .text(t)
        case "ask":
            guard let a = ask(node) else { return nil }
            b.kind = .ask(a)
        case "wait":
            guard let w = wait(primary!) else { return nil }
            b.kind = .wait(w)
        case "wait_for":
            guard let w = waitFor(primary!) else { return nil }
            b.kind = .waitFor(w)
        case "handoff":
            if let s = primary!.scalar {
                b.kind = .handoff(queue: s.text, message: nil)
            } else if let m = mapping(primary!, "handoff") {
                checkKeys(m, allowed: ["queue", "message"], context: "handoff")
                let queue = primary!["queue"].flatMap { string($0, "queue") }?.value ?? "default"
                b.kind = .handoff(queue: queue, message: primary!["message"].flatMap { template($0, "message") })
            } else {
                return nil
            }
        case "ai":
            guard let m = mapping(primary!, "ai") else { return nil }
            checkKeys(m, allowed: ["prompt", "system", "model", "history", "knowledge", "extract", "temperature", "max_tokens"],
                      context: "ai")
            if primary!["prompt"] == nil {
                error("missing-key", "ai needs a 'prompt'", at: primary!.location, hint: "for example prompt: \"{{ message.text }}\"")
            }
            b.kind = .action(name: Located(value: "ai.chat", location: entry.keyLocation), parameters: param(primary!))
        case "webhook":
            guard let m = mapping(primary!, "webhook") else { return nil }
            checkKeys(m, allowed: ["url", "method", "headers", "query", "body", "timeout"], context: "webhook")
            if primary!["url"] == nil { error("missing-key", "webhook needs a 'url'", at: primary!.location) }
            if let t = primary!["timeout"] { _ = duration(t, "webhook timeout") }
            b.kind = .action(name: Located(value: "http.request", location: entry.keyLocation), parameters: param(primary!))
        case "use":
            guard let name = string(primary!, "use") else { return nil }
            b.kind = .action(name: name, parameters: node["with"].flatMap { param($0) } ?? .map([], name.location))
        case "set":
            guard let m = mapping(primary!, "set") else { return nil }
            var assignments: [(String, SourcePosition, Expr)] = []
            for e in m {
                guard isIdentifier(e.key), !Program.builtinVariables.contains(e.key) else {
                    error("invalid-value", "'\(e.key)' cannot be set", at: e.keyLocation)
                    continue
                }
                if let s = e.value.scalar, s.text.contains("{{") {
                    if let t = template(e.value, "a value") { assignments.append((e.key, e.keyLocation, Lowering.templateExpr(t))) }
                } else if e.value.scalar == nil, let p = param(e.value) {
                    assignments.append((e.key, e.keyLocation, Lowering.paramExpr(p)))
                } else if let x = expression(e.value, "a value") {
                    assignments.append((e.key, e.keyLocation, x))
                }
            }
            b.kind = .set(assignments)
        case "contact":
            guard let edit = contactEdit(primary!) else { return nil }
            b.kind = .contact(edit)
        case "goto":
            guard let t = string(primary!, "goto") else { return nil }
            b.kind = .goto(t)
        case "call":
            guard let t = string(primary!, "call") else { return nil }
            b.kind = .call(t)
        case "end":
            if let s = primary!.scalar, !s.quoted, ["true", "yes", ""].contains(s.text) {
                b.kind = .end(nil)
            } else {
                b.kind = .end(template(primary!, "end"))
            }
        default:
            b.kind = .condition
        }
        return b
    }

    /// A `contact:` block's edit: `set` (attribute: value, a template or a fixed value; null removes it), `unset`,
    /// `tag` and `untag` (a name, or a list of them; templates allowed). Fixed names are checked here, computed ones
    /// when the block runs.
    private mutating func contactEdit(_ node: SourceNode) -> Expr? {
        guard let m = mapping(node, "contact") else { return nil }
        checkKeys(m, allowed: ["set", "unset", "tag", "untag"], context: "contact")
        if m.isEmpty {
            error("missing-key", "contact needs set, unset, tag or untag", at: node.location, hint: "for example tag: [vip]")
            return nil
        }
        var fields: [(String, Expr)] = []
        if let s = node["set"], let entries = mapping(s, "contact set") {
            var values: [(String, Expr)] = []
            for e in entries {
                guard ContactAttributes.validKey(e.key) else {
                    error("invalid-value", ContactAttributes.keyProblem(e.key).message, at: e.keyLocation)
                    continue
                }
                if let s = e.value.scalar, s.text.contains("{{") {
                    if let t = template(e.value, "a value") { values.append((e.key, Lowering.templateExpr(t))) }
                } else if let p = param(e.value) {
                    if let v = FlowParser.constant(p), v != .null, let problem = ContactAttributes.check(e.key, v) {
                        error("invalid-value", problem.message, at: e.value.location)
                        continue
                    }
                    values.append((e.key, Lowering.paramExpr(p)))
                }
            }
            if values.count > ContactAttributes.maxAttributes {
                error("invalid-value", "a contact has at most \(ContactAttributes.maxAttributes) attributes", at: s.location)
            }
            fields.append(("set", .map(values, s.location)))
        }
        for (field, valid, problem) in [("unset", ContactAttributes.validKey, ContactAttributes.keyProblem),
                                        ("tag", ContactAttributes.validTag, ContactAttributes.tagProblem),
                                        ("untag", ContactAttributes.validTag, ContactAttributes.tagProblem)] {
            guard let n = node[field] else { continue }
            let items: [SourceNode]
            switch n {
            case .sequence(let list, _): items = list
            case .scalar: items = [n]
            default:
                error("invalid-value", "\(field) must be a name or a list of names", at: n.location)
                continue
            }
            var names: [Expr] = []
            for item in items {
                guard let s = item.scalar else {
                    error("invalid-value", "\(field) must be a name or a list of names", at: item.location)
                    continue
                }
                if s.text.contains("{{") {
                    if let t = template(item, field) { names.append(Lowering.templateExpr(t)) }
                } else {
                    for name in ContactPatch.names(in: s.text) where !valid(name) {
                        error("invalid-value", problem(name).message, at: s.location)
                    }
                    names.append(.literal(.string(s.text), s.location))
                }
            }
            fields.append((field, .list(names, n.location)))
        }
        return .map(fields, node.location)
    }

    private func isIdentifier(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, f == "_" || f.properties.isAlphabetic else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0) }
    }

    private mutating func branches(_ node: SourceNode) -> [Branch] {
        switch node {
        case .scalar(let s):
            return [Branch(when: nil, target: Located(value: s.text, location: s.location))]
        case .sequence(let items, _):
            var out: [Branch] = []
            for (i, item) in items.enumerated() {
                guard let m = mapping(item, "a branch") else { continue }
                checkKeys(m, allowed: ["when", "goto"], context: "a branch")
                guard let g = item["goto"], let target = string(g, "goto") else {
                    error("missing-key", "this branch has no 'goto'", at: item.location)
                    continue
                }
                let when = item["when"].flatMap { expression($0, "when") }
                if item["when"] == nil, i < items.count - 1 {
                    error("unreachable-branch", "a branch without 'when' always matches, so the branches after it never run",
                          at: item.location, hint: "move the branch without 'when' to the end")
                }
                out.append(Branch(when: when, target: target))
            }
            return out
        default:
            error("invalid-value", "next must be a block id or a list of branches", at: node.location)
            return []
        }
    }

    private mutating func timeout(_ node: SourceNode, nextKey: String) -> (Int, Located<String>)? {
        guard let m = mapping(node, "timeout") else { return nil }
        checkKeys(m, allowed: ["after", nextKey], context: "timeout")
        guard let after = node["after"], let seconds = duration(after, "timeout after") else {
            if node["after"] == nil { error("missing-key", "timeout needs 'after'", at: node.location) }
            return nil
        }
        guard let n = node[nextKey], let next = string(n, nextKey) else {
            error("missing-key", "timeout needs '\(nextKey)': the block to go to", at: node.location)
            return nil
        }
        return (seconds, next)
    }

    private mutating func choices(_ node: SourceNode, what: String) -> [Choice] {
        guard case .sequence(let items, _) = node else {
            error("invalid-value", "\(what) must be a list", at: node.location)
            return []
        }
        var out: [Choice] = []
        for item in items {
            if let s = item.scalar {
                out.append(Choice(id: s.text, title: s.text, location: s.location))
            } else if let m = mapping(item, "a choice") {
                checkKeys(m, allowed: ["id", "title", "description"], context: "a choice")
                guard let title = item["title"].flatMap({ string($0, "title") }) else {
                    error("missing-key", "a choice needs a 'title'", at: item.location)
                    continue
                }
                let id = item["id"].flatMap { string($0, "id") }?.value ?? title.value
                out.append(Choice(id: id, title: title.value, description: item["description"].flatMap { string($0, "description") }?.value,
                                  location: title.location))
            }
        }
        return out
    }

    private mutating func ask(_ node: SourceNode) -> Block.Ask? {
        guard let prompt = template(node["ask"]!, "ask") else { return nil }
        var a = Block.Ask(prompt: prompt, validation: .map([:]), resultType: .string)
        var spec: [String: Value] = [:]
        if let v = node["validate"] {
            if let s = v.scalar {
                spec["type"] = .string(s.text)
            } else if let m = mapping(v, "validate") {
                checkKeys(m, allowed: ["type", "min_length", "max_length", "min", "max", "pattern", "timezone"], context: "validate")
                for e in m {
                    switch e.key {
                    case "type", "pattern", "timezone":
                        if let s = string(e.value, e.key) { spec[e.key] = .string(s.value) }
                    default:
                        if let s = e.value.scalar, let n = Double(s.text) {
                            spec[e.key] = .number(n)
                        } else {
                            error("invalid-value", "\(e.key) must be a number", at: e.value.location)
                        }
                    }
                }
            }
            let type = spec["type"]?.text ?? "text"
            if !Validation.types.contains(type) {
                error("unknown-type", "unknown validation type '\(type)'", at: (v["type"] ?? v).location,
                      hint: Suggest.hint(type, Validation.types) ?? "use one of: \(Validation.types.sorted().joined(separator: ", "))")
            }
            if case .string(let p)? = spec["pattern"], let problem = PatternCheck.problem(p) {
                error(problem.code, problem.message, at: v["pattern"]!.location)
            }
            if case .string(let tz)? = spec["timezone"], TimeZone(identifier: tz) == nil {
                error("unknown-timezone", "unknown time zone '\(tz)'", at: v["timezone"]!.location,
                      hint: "use an IANA name such as America/Sao_Paulo or Europe/Lisbon")
            }
        }
        switch spec["type"]?.text ?? "text" {
        case "number", "integer": a.resultType = .number
        case "yes_no": a.resultType = .bool
        case "any": a.resultType = .any
        default: a.resultType = .string
        }
        if let i = node["invalid"] { a.invalid = template(i, "invalid") }
        if let r = node["retries"] { a.retries = int(r, "retries", range: 0...20) }
        if let bn = node["buttons"] { a.buttons = choices(bn, what: "buttons") }
        if let l = node["list"] {
            if case .sequence = l {
                a.rows = choices(l, what: "list")
                a.listButton = "Options"
            } else if let m = mapping(l, "list") {
                checkKeys(m, allowed: ["button", "rows"], context: "list")
                a.listButton = l["button"].flatMap { string($0, "button") }?.value ?? "Options"
                if let rows = l["rows"] { a.rows = choices(rows, what: "rows") } else {
                    error("missing-key", "list needs 'rows'", at: l.location)
                }
            }
        }
        if !a.buttons.isEmpty, !a.rows.isEmpty {
            error("conflicting-keys", "an ask has either buttons or a list, not both", at: node["list"]!.location)
        }
        let options = a.buttons.isEmpty ? a.rows : a.buttons
        if !options.isEmpty {
            spec["choices"] = .list(options.map { c in
                .map(["id": .string(c.id), "title": .string(c.title),
                      "value": .string(a.buttons.isEmpty ? c.id : c.title)])
            })
            if spec["type"] != nil, spec["type"]?.text != "choice" {
                error("conflicting-keys", "an ask with buttons or a list accepts only its choices; remove 'validate'",
                      at: node["validate"]!.location)
            }
            spec["type"] = .string("choice")
            a.resultType = .string
        }
        a.validation = .map(spec)
        if let t = node["timeout"], let (seconds, next) = timeout(t, nextKey: "next") { a.timeout = (seconds, next) }
        if let o = node["on_invalid"] {
            a.onInvalid = string(o, "on_invalid")
            // on_invalid only makes sense with a limit; two re-asks is the documented default.
            if a.retries == nil { a.retries = 2 }
        }
        return a
    }

    private mutating func wait(_ node: SourceNode) -> Block.Wait? {
        if node.scalar != nil {
            guard let s = duration(node, "wait") else { return nil }
            return .duration(s)
        }
        guard let m = mapping(node, "wait") else { return nil }
        checkKeys(m, allowed: ["for", "until", "timezone"], context: "wait")
        if let f = node["for"] {
            if node["until"] != nil { error("conflicting-keys", "wait has 'for' or 'until', not both", at: node.location) }
            return duration(f, "wait for").map { .duration($0) }
        }
        guard let u = node["until"] else {
            error("missing-key", "wait needs a duration, 'for' or 'until'", at: node.location)
            return nil
        }
        var tz = "UTC"
        if let t = node["timezone"], let s = string(t, "timezone") {
            if TimeZone(identifier: s.value) == nil {
                error("unknown-timezone", "unknown time zone '\(s.value)'", at: s.location,
                      hint: "use an IANA name such as America/Sao_Paulo or Europe/Lisbon")
            }
            tz = s.value
        }
        guard let until = template(u, "until") else { return nil }
        if let text = until.constantText, isTimeOrDate(text) == false {
            error("invalid-time", "'\(text)' is not a time (HH:mm) or a date (2026-12-24T09:00:00Z)", at: u.location)
        }
        return .until(until, timezone: tz)
    }

    private func isTimeOrDate(_ text: String) -> Bool {
        let parts = text.split(separator: ":")
        if parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), parts[1].count == 2 {
            return (0..<24).contains(h) && (0..<60).contains(m)
        }
        return (try? Regex(#"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"#).wholeMatch(in: text)) != nil
    }

    private mutating func waitFor(_ node: SourceNode) -> Block.WaitFor? {
        guard let m = mapping(node, "wait_for") else { return nil }
        checkKeys(m, allowed: ["event", "match", "timeout", "on_timeout"], context: "wait_for")
        guard let ev = node["event"], let event = string(ev, "event") else {
            error("missing-key", "wait_for needs an 'event'", at: node.location, hint: "for example event: stripe.paid")
            return nil
        }
        guard let mt = node["match"], let match = expression(mt, "match") else {
            if node["match"] == nil {
                error("missing-key", "wait_for needs 'match': the value that identifies this conversation's event",
                      at: node.location, hint: "for example match: checkout.id")
            }
            return nil
        }
        var w = Block.WaitFor(event: event.value, match: match)
        if let t = node["timeout"] {
            guard let seconds = duration(t, "timeout") else { return w }
            guard let o = node["on_timeout"], let next = string(o, "on_timeout") else {
                error("missing-key", "wait_for with a timeout needs 'on_timeout': the block to go to", at: t.location)
                return w
            }
            w.timeout = (seconds, next)
        } else if let o = node["on_timeout"] {
            error("missing-key", "on_timeout needs a 'timeout'", at: o.location)
        }
        return w
    }
}

import Foundation
