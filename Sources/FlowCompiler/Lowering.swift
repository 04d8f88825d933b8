import FlowVM

/// Lowers a checked `FlowAST` to a `Program`. Runs only on flows without errors.
struct Lowering {
    let ast: FlowAST
    let file: String
    private var asm = Assembler()
    private var slots: [String: UInt32] = [:]
    private var variables: [String] = []
    private var blockLabels: [String: Assembler.Label] = [:]

    init(ast: FlowAST, file: String, variableNames: [String]) {
        self.ast = ast
        self.file = file
        for name in Program.builtinVariables + variableNames.sorted() where slots[name] == nil {
            slots[name] = UInt32(variables.count)
            variables.append(name)
        }
    }

    private mutating func slot(_ name: String) -> UInt32 {
        if let s = slots[name] { return s }
        let s = UInt32(variables.count)
        slots[name] = s
        variables.append(name)
        return s
    }

    // MARK: Expressions

    /// The expression a parameter tree evaluates to.
    static func paramExpr(_ p: ParamValue) -> Expr {
        switch p {
        case .literal(let v, let l): .literal(v, l)
        case .template(let t): templateExpr(t)
        case .list(let items, let l): .list(items.map(paramExpr), l)
        case .map(let entries, let l): .map(entries.map { ($0.0, paramExpr($0.2)) }, l)
        }
    }

    /// A template alone in a value (`"{{ total }}"`) keeps its expression's value; otherwise it is text.
    static func templateExpr(_ t: Template) -> Expr {
        if t.parts.count == 1, case .expr(let e) = t.parts[0] { return e }
        return .concat(t.parts.map { part in
            switch part {
            case .text(let s): .literal(.string(s), t.location)
            case .expr(let e): e
            }
        }, t.location)
    }

    private mutating func expr(_ e: Expr) {
        switch e {
        case .literal(let v, _): asm.emit(.push(asm.constant(v)))
        case .variable(let n, _): asm.emit(.load(slot(n)))
        case .member(let base, let name, _):
            expr(base)
            asm.emit(.member(asm.constant(.string(name))))
        case .index(let base, let i, _):
            expr(base)
            expr(i)
            asm.emit(.index)
        case .unary(let op, let x, _):
            expr(x)
            asm.emit(.unary(op))
        case .binary(let op, let a, let b, _):
            expr(a)
            expr(b)
            asm.emit(.binary(op))
        case .and(let a, let b, _):
            let isFalse = asm.newLabel(), done = asm.newLabel()
            expr(a)
            asm.emit(.jumpIfFalse(0), to: isFalse)
            expr(b)
            asm.emit(.unary(.not))
            asm.emit(.unary(.not))
            asm.emit(.jump(0), to: done)
            asm.bind(isFalse)
            asm.emit(.push(asm.constant(.bool(false))))
            asm.bind(done)
        case .or(let a, let b, _):
            let tryRight = asm.newLabel(), done = asm.newLabel()
            expr(a)
            asm.emit(.jumpIfFalse(0), to: tryRight)
            asm.emit(.push(asm.constant(.bool(true))))
            asm.emit(.jump(0), to: done)
            asm.bind(tryRight)
            expr(b)
            asm.emit(.unary(.not))
            asm.emit(.unary(.not))
            asm.bind(done)
        case .coalesce(let a, let b, _):
            let done = asm.newLabel()
            expr(a)
            asm.emit(.jumpIfNotNull(0), to: done)
            expr(b)
            asm.bind(done)
        case .call(let name, let args, _):
            for a in args { expr(a) }
            asm.emit(.call(Builtin.named(name)!, argc: UInt8(args.count)))
        case .list(let items, _):
            for i in items { expr(i) }
            asm.emit(.makeList(UInt32(items.count)))
        case .map(let pairs, _):
            for (k, v) in pairs {
                asm.emit(.push(asm.constant(.string(k))))
                expr(v)
            }
            asm.emit(.makeMap(UInt32(pairs.count)))
        case .concat(let parts, _):
            for p in parts { expr(p) }
            asm.emit(.concat(UInt32(parts.count)))
        }
    }

    /// Pushes a template as text.
    private mutating func text(_ t: Template) {
        for part in t.parts {
            switch part {
            case .text(let s): asm.emit(.push(asm.constant(.string(s))))
            case .expr(let e): expr(e)
            }
        }
        asm.emit(.concat(UInt32(t.parts.count)))
    }

    // MARK: Blocks

    private func label(_ id: String) -> Assembler.Label { blockLabels[id]! }

    mutating func lower() -> Program {
        for b in ast.blocks { blockLabels[b.id] = asm.newLabel() }
        asm.mark(ast.location)
        // A default fills a variable the conversation did not start with (`POST /v1/flows/{name}/start` may give it):
        // the slot keeps its value when it has one, else takes the default.
        for v in ast.variables {
            if let d = v.defaultValue {
                let kept = asm.newLabel()
                asm.emit(.load(slot(v.name)))
                asm.emit(.jumpIfNotNull(0), to: kept)
                asm.emit(.push(asm.constant(d)))
                asm.bind(kept)
                asm.emit(.store(slot(v.name)))
            }
        }
        asm.emit(.jump(0), to: label(ast.start!.value))

        var handlers: [(Int, String)] = []
        for (index, b) in ast.blocks.enumerated() {
            asm.bind(label(b.id))
            asm.mark(b.location)
            asm.emit(.enterBlock(UInt32(index)))
            if let e = b.onError { handlers.append((index, e.value)) }
            lowerBody(b)
        }
        let instructions = asm.finish()
        var blocks = ast.blocks.map { Program.Block(id: $0.id, pc: asm.address(of: label($0.id))!) }
        for (index, target) in handlers { blocks[index].errorHandler = asm.address(of: label(target)) }

        var metadata: [String: Value] = [:]
        if let d = ast.description { metadata["description"] = .string(d) }
        if let t = ast.trigger {
            metadata["trigger"] = .map([
                "channel": t.channel.map { .string($0.value) } ?? .null,
                "keywords": .list(t.keywords.map(Value.string)),
            ])
            if let w = t.webhook {
                var m: [String: Value] = ["address": .string(w.address.value)]
                if let n = w.name { m["name"] = .string(n.value) }
                m["variables"] = .map(Dictionary(w.variables.map { ($0.name.value, Value.string($0.path.value)) }) { a, _ in a })
                metadata["webhook"] = .map(m)
            }
            if let e = t.event {
                metadata["event"] = ["name": .string(e.name.value),
                                     "variables": .map(Dictionary(e.variables.map { ($0.name.value, Value.string($0.path.value)) }) { a, _ in a })]
            }
            if let s = t.schedule {
                var m: [String: Value] = ["cron": .list(s.cron.map { .string($0.value) }), "timezone": .string(s.timezone),
                                          "missed": .string(s.missed)]
                if let g = s.segment { m["segment"] = .string(g.value) } else { m["contacts"] = .list(s.contacts.map(Value.string)) }
                if let c = s.channel { m["channel"] = .string(c.value) }
                if let r = s.rate { m["rate"] = .number(r) }
                metadata["schedule"] = .map(m)
            }
        }
        if let d = ast.debounce { metadata["debounce"] = .number(Double(d)) }
        if let t = ast.whatsappTemplate { metadata["whatsapp_template"] = ["name": .string(t.name), "language": .string(t.language)] }
        if let start = ast.start?.value, Self.opensWithTemplate(ast, from: start) { metadata["opens_with_template"] = true }
        return Program(
            name: ast.name?.value ?? "", sourceFile: file, metadata: .map(metadata), instructions: instructions,
            constants: asm.constants, variables: variables, blocks: blocks, sourceMap: asm.sourceMap
        )
    }

    /// Whether every way from `start` to the flow's first message goes through a `whatsapp.template` action first:
    /// such a flow may open a conversation outside WhatsApp's 24-hour window without a flow-level template. A flow
    /// that can end, or wait, before sending anything counts as opening with a template on that path (it sends
    /// nothing the window could refuse there).
    static func opensWithTemplate(_ ast: FlowAST, from start: String) -> Bool {
        var seen: Set<String> = [], stack = [start]
        var reachedTemplate = false
        while let id = stack.popLast() {
            guard seen.insert(id).inserted, let b = ast.block(id) else { continue }
            switch b.kind {
            case .action(let name, _) where name.value == "whatsapp.template":
                reachedTemplate = true
                continue  // what follows is inside the window the template opened
            case .text, .ask, .end(.some), .handoff(_, .some):
                return false
            case .action(let name, _) where name.value == "whatsapp.media" || name.value == "channel.send":
                return false
            default:
                stack += b.successors.map(\.value)
            }
        }
        return reachedTemplate
    }

    private mutating func store(_ save: Located<String>?) {
        if let save { asm.emit(.store(slot(save.value))) } else { asm.emit(.pop) }
    }

    /// The marker a wait with `on_message` is preceded by: it must come right before the wait instruction.
    private mutating func onMessage(_ b: Block) {
        if let target = b.onMessage { asm.emit(.onMessage(0), to: label(target.value)) }
    }

    private mutating func lowerBody(_ b: Block) {
        switch b.kind {
        case .text(let t):
            text(t)
            asm.emit(.send(options: asm.constant(.null)))
        case .ask(let a):
            lowerAsk(b, a)
            return
        case .condition:
            break
        case .wait(.duration(let seconds)):
            onMessage(b)
            asm.emit(.sleep(UInt32(seconds)))
        case .wait(.until(let t, let tz)):
            text(t)
            onMessage(b)
            asm.emit(.sleepUntil(timezone: asm.constant(.string(tz))))
        case .waitFor(let w):
            expr(w.match)
            onMessage(b)
            let name = asm.constant(.string(w.event))
            if let timeout = w.timeout {
                asm.emit(.awaitEvent(name: name, timeout: UInt32(timeout.seconds), onTimeout: 0), to: label(timeout.next.value))
            } else {
                asm.emit(.awaitEvent(name: name, timeout: 0, onTimeout: 0))
            }
            store(b.save)
        case .handoff(let queue, let message):
            if let message {
                text(message)
                asm.emit(.send(options: asm.constant(.null)))
            }
            asm.emit(.handoff(queue: asm.constant(.string(queue))))
        case .action(let name, let parameters):
            expr(parameters.map(Lowering.paramExpr) ?? .map([], b.location))
            asm.emit(.perform(action: asm.constant(.string(name.value))))
            store(b.save)
        case .set(let assignments):
            for (name, l, e) in assignments {
                asm.mark(l)
                expr(e)
                asm.emit(.store(slot(name)))
            }
        case .contact(let edit):
            expr(edit)
            asm.emit(.updateContact)
        case .goto(let target):
            asm.emit(.jump(0), to: label(target.value))
            return
        case .call(let target):
            asm.emit(.callBlock(0), to: label(target.value))
        case .end(let message):
            if let message {
                text(message)
                asm.emit(.send(options: asm.constant(.null)))
            }
            asm.emit(.end)
            return
        }
        lowerNext(b)
    }

    /// Branches in order; the first whose `when` holds wins. With no branch taken the chain ends: `ret`
    /// returns to a `call:` or ends the flow.
    private mutating func lowerNext(_ b: Block) {
        for branch in b.next {
            asm.mark(branch.target.location)
            if let when = branch.when {
                let skip = asm.newLabel()
                expr(when)
                asm.emit(.jumpIfFalse(0), to: skip)
                asm.emit(.jump(0), to: label(branch.target.value))
                asm.bind(skip)
            } else {
                asm.emit(.jump(0), to: label(branch.target.value))
                return
            }
        }
        asm.emit(.ret)
    }

    private mutating func lowerAsk(_ b: Block, _ a: Block.Ask) {
        var options: [String: Value] = [:]
        if !a.buttons.isEmpty { options["buttons"] = .list(a.buttons.map { .string($0.title) }) }
        if !a.rows.isEmpty {
            options["list"] = .map([
                "button": .string(a.listButton ?? "Options"),
                "rows": .list(a.rows.map { r in
                    .map(["id": .string(r.id), "title": .string(r.title), "description": r.description.map(Value.string) ?? .null])
                }),
            ])
        }
        let optionsConstant = asm.constant(options.isEmpty ? .null : .map(options))
        let tries = a.retries == nil ? 0 : slot("#tries.\(b.id)")
        if a.retries != nil {
            asm.emit(.push(asm.constant(.number(0))))
            asm.emit(.store(tries))
        }
        text(a.prompt)
        asm.emit(.send(options: optionsConstant))

        let wait = asm.newLabel(), invalid = asm.newLabel()
        asm.bind(wait)
        if let timeout = a.timeout {
            asm.emit(.awaitInput(timeout: UInt32(timeout.seconds), onTimeout: 0), to: label(timeout.next.value))
        } else {
            asm.emit(.awaitInput(timeout: 0, onTimeout: 0))
        }
        asm.emit(.validate(spec: asm.constant(a.validation), onInvalid: 0), to: invalid)
        store(b.save)
        lowerNext(b)

        asm.bind(invalid)
        if let retries = a.retries {
            let exhausted = asm.newLabel()
            asm.emit(.load(tries))
            asm.emit(.push(asm.constant(.number(Double(retries)))))
            asm.emit(.binary(.less))
            asm.emit(.jumpIfFalse(0), to: exhausted)
            asm.emit(.load(tries))
            asm.emit(.push(asm.constant(.number(1))))
            asm.emit(.binary(.add))
            asm.emit(.store(tries))
            text(a.invalid ?? a.prompt)
            asm.emit(.send(options: optionsConstant))
            asm.emit(.jump(0), to: wait)
            asm.bind(exhausted)
            if let target = a.onInvalid {
                asm.emit(.jump(0), to: label(target.value))
            } else {
                asm.emit(.fail(asm.constant(.string(FlowVMError.Code.inputInvalid.rawValue))))
            }
        } else {
            text(a.invalid ?? a.prompt)
            asm.emit(.send(options: optionsConstant))
            asm.emit(.jump(0), to: wait)
        }
    }
}
