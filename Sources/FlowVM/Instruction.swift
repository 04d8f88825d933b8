/// One bytecode instruction. The instruction set is defined here once; programs and continuations persist it,
/// so changing an encoding means bumping `Program.formatVersion`.
///
/// Expressions run on an operand stack; operands are indices into the program's constant pool, variable
/// slots, block table or absolute program counters (always produced by the assembler's labels).
public enum Instruction: Sendable, Hashable {
    // MARK: Values
    /// Pushes constant `index`.
    case push(UInt32)
    /// Pushes variable slot `slot`.
    case load(UInt32)
    /// Pops into variable slot `slot`.
    case store(UInt32)
    /// Drops the top of the stack.
    case pop
    /// Replaces a map on the stack by its member named by constant `name` (null when missing).
    case member(UInt32)
    /// Pops an index and a collection, pushes the element (null when out of range).
    case index
    case unary(UnaryOperator)
    case binary(BinaryOperator)
    /// Calls a standard-library function with `argc` arguments from the stack.
    case call(Builtin, argc: UInt8)
    /// Pops `count` values into a list.
    case makeList(UInt32)
    /// Pops `count` key/value pairs (key pushed first) into a map.
    case makeMap(UInt32)
    /// Pops `count` values and pushes their text joined: a template.
    case concat(UInt32)

    // MARK: Control
    case jump(UInt32)
    /// Pops; jumps when the value is not truthy.
    case jumpIfFalse(UInt32)
    /// Jumps, keeping the top of the stack, when it is not null; pops it otherwise (`??`).
    case jumpIfNotNull(UInt32)
    /// Marks entry into block `index`: traces record it and runtime errors route to its `on_error`.
    case enterBlock(UInt32)
    /// Pushes the return address and jumps to `target` (`call:` a block as a subroutine).
    case callBlock(UInt32)
    /// Returns from `callBlock`; ends the flow when the call stack is empty.
    case ret
    /// Raises the runtime error whose code is constant `code`.
    case fail(UInt32)
    /// Ends the conversation.
    case end

    // MARK: Effects and waits
    /// Pops the text and sends a message; constant `options` holds its buttons or list (a map, or null).
    case send(options: UInt32)
    /// Suspends until the contact replies; a timeout of 0 means none, else after `timeout` seconds
    /// execution continues at `onTimeout`.
    case awaitInput(timeout: UInt32, onTimeout: UInt32)
    /// Checks the last reply against the validation spec in constant `spec`; pushes the typed value,
    /// or jumps to `onInvalid`.
    case validate(spec: UInt32, onInvalid: UInt32)
    /// Marks the wait that follows (`sleep`, `sleepUntil`, `awaitEvent`): a message from the contact during it goes to
    /// `target`, with the message in `message`, instead of being kept unanswered. Does nothing when run.
    case onMessage(UInt32)
    /// Suspends for `seconds`.
    case sleep(UInt32)
    /// Pops a time (`HH:mm` or an ISO 8601 instant) and suspends until then; constant `timezone` names
    /// the zone local times are read in.
    case sleepUntil(timezone: UInt32)
    /// Pops a correlation key and suspends until the external event named by constant `name` arrives with it;
    /// pushes the event's payload.
    case awaitEvent(name: UInt32, timeout: UInt32, onTimeout: UInt32)
    /// Hands the conversation to a human in the queue named by constant `queue` and suspends until handed back.
    case handoff(queue: UInt32)
    /// Pops a parameter map, asks the engine to perform the connector action named by constant `action`,
    /// and suspends until its result arrives; pushes the result.
    case perform(action: UInt32)
    /// Pops a contact edit (a map of `name`, `set`, `unset`, `tag`, `untag`), checks it, applies it to `contact` and
    /// asks the engine to commit it to the contact's record with the turn. Does not wait.
    case updateContact
}

/// Prefix operators.
public enum UnaryOperator: UInt8, Sendable, Hashable, CaseIterable {
    case not, negate
}

/// Infix operators other than the short-circuiting `and`, `or` and `??`, which lower to jumps.
public enum BinaryOperator: UInt8, Sendable, Hashable, CaseIterable {
    case add, subtract, multiply, divide, remainder
    case equal, notEqual, less, lessOrEqual, greater, greaterOrEqual
    /// `a in b`: membership in a list, substring of a string, key of a map.
    case contains
    /// `a matches "regex"`.
    case matches

    /// The operator as written in the language.
    public var symbol: String {
        switch self {
        case .add: "+"
        case .subtract: "-"
        case .multiply: "*"
        case .divide: "/"
        case .remainder: "%"
        case .equal: "=="
        case .notEqual: "!="
        case .less: "<"
        case .lessOrEqual: "<="
        case .greater: ">"
        case .greaterOrEqual: ">="
        case .contains: "in"
        case .matches: "matches"
        }
    }
}

extension Instruction {
    /// The jump target of a control instruction, if it has one; the assembler back-patches these.
    public var target: UInt32? {
        switch self {
        case .jump(let t), .jumpIfFalse(let t), .jumpIfNotNull(let t), .callBlock(let t), .onMessage(let t): t
        case .awaitInput(let timeout, let t): timeout == 0 ? nil : t
        case .validate(_, let t): t
        case .awaitEvent(_, let timeout, let t): timeout == 0 ? nil : t
        default: nil
        }
    }

    /// The same instruction with its jump target replaced.
    public func withTarget(_ t: UInt32) -> Instruction {
        switch self {
        case .jump: .jump(t)
        case .jumpIfFalse: .jumpIfFalse(t)
        case .jumpIfNotNull: .jumpIfNotNull(t)
        case .callBlock: .callBlock(t)
        case .onMessage: .onMessage(t)
        case .awaitInput(let timeout, _): .awaitInput(timeout: timeout, onTimeout: t)
        case .validate(let spec, _): .validate(spec: spec, onInvalid: t)
        case .awaitEvent(let name, let timeout, _): .awaitEvent(name: name, timeout: timeout, onTimeout: t)
        default: self
        }
    }
}
