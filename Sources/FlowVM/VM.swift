/// The flow interpreter: pure and deterministic. It never does I/O; given a continuation, an event and the
/// time, it runs until the flow must wait and returns the new continuation, the effects to perform and the
/// blocks it visited. Durability is the engine's job.
public struct VM: Sendable {
    /// Instructions one turn may run before the flow is failed as a runaway.
    public static let defaultBudget = 100_000

    public let program: Program
    public let budget: Int
    private let programHash: String

    public init(program: Program, budget: Int = VM.defaultBudget) {
        self.program = program
        self.budget = budget
        self.programHash = program.hash
    }

    /// Who and where a new conversation is: fills the built-in variables.
    public struct StartContext: Sendable {
        public var contact: Value
        public var conversation: Value
        public var channel: Value
        /// The message that started the conversation, if one did.
        public var message: InboundMessage?
        /// Variables the conversation starts with (a flow started through the API); names the program does not
        /// know, and the built-in ones, are not set.
        public var variables: [String: Value]

        public init(contact: Value = .map([:]), conversation: Value = .map([:]), channel: Value = .null,
                    message: InboundMessage? = nil, variables: [String: Value] = [:]) {
            self.contact = contact
            self.conversation = conversation
            self.channel = channel
            self.message = message
            self.variables = variables
        }
    }

    static let contactSlot = 0, conversationSlot = 1, channelSlot = 2, errorSlot = 3, messageSlot = 4

    /// Starts a conversation at the flow's first block and runs its first turn.
    public func start(_ context: StartContext, now: Timestamp) -> StepResult {
        var c = Continuation(programHash: programHash, variableCount: program.variables.count)
        c.variables[VM.contactSlot] = context.contact
        c.variables[VM.conversationSlot] = context.conversation
        c.variables[VM.channelSlot] = context.channel
        c.variables[VM.messageSlot] = context.message?.value ?? .null
        for (name, value) in context.variables where !Program.builtinVariables.contains(name) {
            if let slot = program.variables.firstIndex(of: name) { c.variables[slot] = value }
        }
        if let message = context.message { VM.noteMessage(message, &c, now: now) }
        return run(c, now: now)
    }

    /// Notes when the contact last wrote, in `conversation.last_message_at`, and, on a channel with a reply window
    /// (the message says how long), when it closes, in `conversation.window_closes_at` (ISO 8601 instants, so a
    /// flow tests `now() < conversation.window_closes_at`).
    static func noteMessage(_ message: InboundMessage, _ c: inout Continuation, now: Timestamp) {
        guard case .map(var conversation) = c.variables[VM.conversationSlot] else { return }
        conversation["last_message_at"] = .string(now.iso8601)
        conversation["window_closes_at"] = message.replyWindow.map { .string(now.adding(seconds: $0).iso8601) }
        c.variables[VM.conversationSlot] = .map(conversation)
    }

    /// Applies one event to a waiting conversation and runs until the next wait.
    ///
    /// Throws only when the continuation belongs to another program; an event that does not fit the
    /// current wait (a stale timer, a message during a `wait:`) comes back with `ignored` set.
    public func step(_ continuation: Continuation, event: Event, now: Timestamp) throws -> StepResult {
        guard continuation.programHash == programHash else {
            throw FlowVMError(.programMismatch, "continuation was made by program \(continuation.programHash.prefix(12))")
        }
        var c = continuation
        guard case .waiting(let wait) = c.status, c.pc < program.instructions.count else { return ignored(c) }
        let ins = program.instructions[c.pc]

        switch (wait, event) {
        case (.input, .message(let m)):
            c.variables[VM.messageSlot] = m.value
            VM.noteMessage(m, &c, now: now)
            c.pc += 1
        case (.input(let deadline?), .timer) where now >= deadline:
            guard case .awaitInput(_, let onTimeout) = ins else { return ignored(c) }
            c.pc = Int(onTimeout)
        case (.timer(let at), .timer) where now >= at:
            c.pc += 1
        case (.event(let name, let key, _), .external(let n, let k, let payload)) where n == name && k == key:
            c.stack.append(payload)
            c.pc += 1
        case (.event(_, _, let deadline?), .timer) where now >= deadline:
            guard case .awaitEvent(_, _, let onTimeout) = ins else { return ignored(c) }
            c.pc = Int(onTimeout)
        case (.timer, .message(let m)), (.event, .message(let m)):
            // A wait with `on_message`: the contact is heard, and the flow goes on from that block.
            guard c.pc > 0, case .onMessage(let target) = program.instructions[c.pc - 1] else { return ignored(c) }
            c.variables[VM.messageSlot] = m.value
            VM.noteMessage(m, &c, now: now)
            c.pc = Int(target)
        case (.handoff, .handback):
            c.pc += 1
        case (.effect(let id), .effectResult(let rid, let result)) where id == rid:
            switch result {
            case .success(let v):
                c.stack.append(v)
                c.pc += 1
            case .failure(let code, let message):
                let error = FlowVMError(.effectFailed, "\(code): \(message)", block: blockID(c.block), reason: code)
                guard route(error, &c) else { return StepResult(continuation: c, effects: [], visited: [], instructions: 0, ignored: false) }
            }
        default:
            return ignored(c)
        }
        // What arrives from outside is held to the same limits as what a flow makes.
        do {
            try VM.checkLimits(of: event)
        } catch {
            guard route(error, &c) else { return StepResult(continuation: c, effects: [], visited: [], instructions: 0, ignored: false) }
        }
        return run(c, now: now)
    }

    /// Runs a failed conversation again from the start of the block it failed in (an operator's "retry").
    public func retry(_ continuation: Continuation, now: Timestamp) throws -> StepResult {
        guard continuation.programHash == programHash else {
            throw FlowVMError(.programMismatch, "continuation was made by program \(continuation.programHash.prefix(12))")
        }
        guard case .failed(let error) = continuation.status, let id = error.block, let block = program.block(named: id) else {
            throw FlowVMError(.invalidEvent, "only a conversation that failed in a known block can be retried")
        }
        var c = continuation
        c.pc = Int(block.pc)
        c.stack.removeAll()
        c.callStack.removeAll()
        c.status = .waiting(.input(timeoutAt: nil))
        return run(c, now: now)
    }

    private func ignored(_ c: Continuation) -> StepResult {
        StepResult(continuation: c, effects: [], visited: [], instructions: 0, ignored: true)
    }

    private func blockID(_ index: Int) -> String? {
        index >= 0 && index < program.blocks.count ? program.blocks[index].id : nil
    }

    private func run(_ start: Continuation, now: Timestamp) -> StepResult {
        var c = start
        var effects: [Effect] = []
        var visited: [String] = []
        var fuel = budget
        return finish(&c, &effects, &visited, &fuel, now: now)
    }

    /// Sends the flow to its block's `on_error`, with `error` set; false when there is none and it has failed.
    private func route(_ error: FlowVMError, _ c: inout Continuation) -> Bool {
        var e = error
        if e.block == nil { e.block = blockID(c.block) }
        if e.code != .budgetExhausted, c.block >= 0, c.block < program.blocks.count,
           let handler = program.blocks[c.block].errorHandler {
            c.variables[VM.errorSlot] = e.value
            c.stack.removeAll()
            c.pc = Int(handler)
            return true
        }
        c.stack.removeAll()
        c.status = .failed(e)
        return false
    }

    private func finish(_ c: inout Continuation, _ effects: inout [Effect], _ visited: inout [String], _ fuel: inout Int,
                        now: Timestamp) -> StepResult {
        let instructions = program.instructions
        let constants = program.constants
        while true {
            if fuel <= 0 {
                _ = route(FlowVMError(.budgetExhausted, "ran \(budget) instructions without waiting; does the flow loop?"), &c)
                break
            }
            fuel -= 1
            guard c.pc >= 0, c.pc < instructions.count else {
                c.status = .ended
                break
            }
            do {
                switch instructions[c.pc] {
                case .push(let i):
                    c.stack.append(constants[Int(i)])
                case .load(let s):
                    c.stack.append(c.variables[Int(s)])
                case .store(let s):
                    c.variables[Int(s)] = c.stack.removeLast()
                case .pop:
                    c.stack.removeLast()
                case .onMessage:
                    break
                case .member(let name):
                    let base = c.stack.removeLast()
                    c.stack.append(try Operators.member(base, constants[Int(name)].text))
                case .index:
                    let i = c.stack.removeLast()
                    let base = c.stack.removeLast()
                    c.stack.append(try Operators.index(base, i))
                case .unary(let op):
                    let v = c.stack.removeLast()
                    c.stack.append(try Operators.unary(op, v))
                case .binary(let op):
                    let b = c.stack.removeLast()
                    let a = c.stack.removeLast()
                    let (v, cost) = try Operators.binary(op, a, b)
                    fuel -= cost + (try ValueLimits.check(v))
                    c.stack.append(v)
                case .call(let f, let argc):
                    let args = Array(c.stack.suffix(Int(argc)))
                    c.stack.removeLast(Int(argc))
                    let (v, cost) = try f.apply(args, now: now)
                    fuel -= cost + (try ValueLimits.check(v))
                    c.stack.append(v)
                case .makeList(let n):
                    let items = Array(c.stack.suffix(Int(n)))
                    c.stack.removeLast(Int(n))
                    let list = Value.list(items)
                    fuel -= try ValueLimits.check(list)
                    c.stack.append(list)
                case .makeMap(let n):
                    var m: [String: Value] = [:]
                    let pairs = Array(c.stack.suffix(Int(n) * 2))
                    c.stack.removeLast(Int(n) * 2)
                    for p in stride(from: 0, to: pairs.count, by: 2) { m[pairs[p].text] = pairs[p + 1] }
                    let map = Value.map(m)
                    fuel -= try ValueLimits.check(map)
                    c.stack.append(map)
                case .concat(let n):
                    var s = ""
                    for v in c.stack.suffix(Int(n)) { s += v.text }
                    c.stack.removeLast(Int(n))
                    try Operators.checkSize(s)
                    fuel -= s.utf8.count / 256
                    c.stack.append(.string(s))
                case .jump(let t):
                    c.pc = Int(t)
                    continue
                case .jumpIfFalse(let t):
                    if !c.stack.removeLast().isTruthy {
                        c.pc = Int(t)
                        continue
                    }
                case .jumpIfNotNull(let t):
                    if c.stack.last != .null {
                        c.pc = Int(t)
                        continue
                    }
                    c.stack.removeLast()
                case .enterBlock(let b):
                    c.block = Int(b)
                    visited.append(program.blocks[Int(b)].id)
                case .callBlock(let t):
                    guard c.callStack.count < 32 else { throw FlowVMError(.callDepth, "call: nested more than 32 deep") }
                    c.callStack.append(c.pc + 1)
                    c.pc = Int(t)
                    continue
                case .ret:
                    guard let back = c.callStack.popLast() else {
                        c.status = .ended
                        return result(c, effects, visited, fuel)
                    }
                    c.pc = back
                    continue
                case .fail(let code):
                    let text = constants[Int(code)].text
                    throw FlowVMError(FlowVMError.Code(rawValue: text) ?? .raised, failMessage(text))
                case .end:
                    c.status = .ended
                    return result(c, effects, visited, fuel)
                case .send(let options):
                    let text = c.stack.removeLast().text
                    c.step += 1
                    effects.append(.send(id: c.step, message: VM.message(text, options: constants[Int(options)])))
                case .awaitInput(let timeout, _):
                    let deadline = timeout == 0 ? nil : now.adding(seconds: Int64(timeout))
                    c.status = .waiting(.input(timeoutAt: deadline))
                    return result(c, effects, visited, fuel)
                case .validate(let spec, let onInvalid):
                    if let v = Validation.check(c.variables[VM.messageSlot], spec: constants[Int(spec)]) {
                        c.stack.append(v)
                    } else {
                        c.pc = Int(onInvalid)
                        continue
                    }
                case .sleep(let seconds):
                    c.status = .waiting(.timer(at: now.adding(seconds: Int64(seconds))))
                    return result(c, effects, visited, fuel)
                case .sleepUntil(let tz):
                    let when = c.stack.removeLast()
                    guard let at = DateFunctions.nextInstant(when.text, timezone: constants[Int(tz)].text, after: now) else {
                        throw FlowVMError(.expression, "wait until: '\(when.text.prefix(40))' is not a time (HH:mm) or an ISO 8601 date")
                    }
                    c.status = .waiting(.timer(at: at))
                    return result(c, effects, visited, fuel)
                case .awaitEvent(let name, let timeout, _):
                    let key = c.stack.removeLast()
                    let deadline = timeout == 0 ? nil : now.adding(seconds: Int64(timeout))
                    c.status = .waiting(.event(name: constants[Int(name)].text, key: key.text, timeoutAt: deadline))
                    return result(c, effects, visited, fuel)
                case .handoff(let queue):
                    c.step += 1
                    let q = constants[Int(queue)].text
                    effects.append(.handoff(id: c.step, queue: q))
                    c.status = .waiting(.handoff(queue: q))
                    return result(c, effects, visited, fuel)
                case .perform(let action):
                    let parameters = c.stack.removeLast()
                    c.step += 1
                    effects.append(.perform(id: c.step, action: constants[Int(action)].text, parameters: parameters))
                    c.status = .waiting(.effect(id: c.step))
                    return result(c, effects, visited, fuel)
                case .updateContact:
                    let given = c.stack.removeLast()
                    let patch: ContactPatch
                    do { patch = try ContactPatch(value: given) } catch { throw FlowVMError(.contactInvalid, error.message) }
                    guard !patch.isEmpty else { break }
                    var contact: [String: Value] = if case .map(let m) = c.variables[VM.contactSlot] { m } else { [:] }
                    var attributes: [String: Value] = if case .map(let a) = contact["attributes"] ?? .null { a } else { [:] }
                    var tags: [String] = if case .list(let t) = contact["tags"] ?? .null { t.map(\.text) } else { [] }
                    if let problem = patch.apply(attributes: &attributes, tags: &tags) {
                        throw FlowVMError(.contactInvalid, problem.message)
                    }
                    contact["attributes"] = .map(attributes)
                    contact["tags"] = .list(tags.map(Value.string))
                    c.variables[VM.contactSlot] = .map(contact)
                    c.step += 1
                    effects.append(.contact(id: c.step, patch: patch))
                }
                c.pc += 1
            } catch let error as FlowVMError {
                if !route(error, &c) { break }
            } catch {
                if !route(FlowVMError(.expression, "\(error)"), &c) { break }
            }
        }
        return result(c, effects, visited, fuel)
    }

    private func failMessage(_ code: String) -> String {
        code == FlowVMError.Code.inputInvalid.rawValue ? "the reply was still invalid after all retries" : "raised \(code)"
    }

    private func result(_ c: Continuation, _ effects: [Effect], _ visited: [String], _ fuel: Int) -> StepResult {
        var c = c
        // What a conversation keeps between turns is bounded as a whole, so its stored row stays small.
        if case .waiting = c.status {
            do {
                try ValueLimits.check(c)
            } catch {
                var e = error
                e.block = blockID(c.block)
                c.stack.removeAll()
                c.status = .failed(e)
            }
        }
        return StepResult(continuation: c, effects: effects, visited: visited, instructions: budget - fuel, ignored: false)
    }

    private static func checkLimits(of event: Event) throws(FlowVMError) {
        switch event {
        case .message(let m): _ = try ValueLimits.measure(m.value, depth: 1)
        case .external(_, _, let payload): _ = try ValueLimits.measure(payload, depth: 1)
        case .effectResult(_, .success(let v)): _ = try ValueLimits.measure(v, depth: 1)
        default: break
        }
    }

    /// Builds a message from its text and the options constant the compiler laid out.
    static func message(_ text: String, options: Value) -> OutboundMessage {
        var m = OutboundMessage(text: text)
        guard case .map(let o) = options else { return m }
        if case .list(let buttons) = o["buttons"] ?? .null { m.buttons = buttons.map(\.text) }
        if case .map(let list) = o["list"] ?? .null {
            m.listButton = list["button"]?.text
            if case .list(let rows) = list["rows"] ?? .null {
                m.rows = rows.map { r in
                    OutboundMessage.Row(id: r["id"].text, title: r["title"].text,
                                        description: r["description"] == .null ? nil : r["description"].text)
                }
            }
        }
        return m
    }
}
