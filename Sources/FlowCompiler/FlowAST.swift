import FlowVM

/// A value with where it came from.
struct Located<T: Sendable>: Sendable {
    var value: T
    var location: SourcePosition
}

/// A connector parameter: literal data with `{{ }}` templates inside strings.
indirect enum ParamValue: Sendable {
    case literal(Value, SourcePosition)
    case template(Template)
    case list([ParamValue], SourcePosition)
    case map([(String, SourcePosition, ParamValue)], SourcePosition)

    var location: SourcePosition {
        switch self {
        case .literal(_, let l), .list(_, let l), .map(_, let l): l
        case .template(let t): t.location
        }
    }
}

/// The flow as written, with locations: the parser's output and the checker's and lowering's input.
struct FlowAST: Sendable {
    struct Trigger: Sendable {
        var channel: Located<String>?
        var keywords: [String]
        var webhook: Webhook?
        var schedule: Schedule?
        var event: Event?
    }
    /// `trigger.event`: the named event (posted to the API) that starts the flow, and the variables its data fills.
    struct Event: Sendable {
        var name: Located<String>
        var variables: [(name: Located<String>, path: Located<String>)]
    }
    /// `trigger.schedule`: when the flow starts itself, and for whom (a segment's contacts or a fixed list).
    struct Schedule: Sendable {
        var cron: [Located<String>]
        var timezone: String
        var segment: Located<String>?
        var contacts: [String]
        var channel: Located<String>?
        var missed: String
        var rate: Double?
        var location: SourcePosition
    }
    /// `trigger.webhook`: where in a JSON body posted to the flow's hook the contact and the variables are.
    struct Webhook: Sendable {
        var address: Located<String>
        var name: Located<String>?
        var variables: [(name: Located<String>, path: Located<String>)]
    }
    struct Variable: Sendable {
        var name: String
        var type: Builtin.ValueType
        var defaultValue: Value?
        var location: SourcePosition
    }

    var name: Located<String>?
    var description: String?
    var trigger: Trigger?
    var variables: [Variable] = []
    var start: Located<String>?
    var blocks: [Block] = [] {
        didSet { blockIndex = Dictionary(blocks.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first }) }
    }
    /// Position of each block id in `blocks`: lookups by id are constant time, so checks stay linear in flow size.
    private(set) var blockIndex: [String: Int] = [:]
    /// Blocks whose body had errors: they exist for references, but are not analysed further.
    var brokenBlocks: Set<String> = []
    /// Seconds to gather a burst of messages into one turn (`debounce:`).
    var debounce: Int?
    /// The approved template WhatsApp sends, with the message text as its parameter, once the 24-hour window has
    /// closed (`whatsapp_template: { name, language }`).
    var whatsappTemplate: (name: String, language: String)?
    var location: SourcePosition

    func block(_ id: String) -> Block? { blockIndex[id].map { blocks[$0] } }
}

/// One branch of `next:`.
struct Branch: Sendable {
    var when: Expr?
    var target: Located<String>
}

/// A choice offered by an `ask` (button or list row).
struct Choice: Sendable {
    var id: String
    var title: String
    var description: String?
    var location: SourcePosition
}

struct Block: Sendable {
    enum Kind: Sendable {
        case text(Template)
        case ask(Ask)
        /// A block with only `next:` branches.
        case condition
        case wait(Wait)
        case waitFor(WaitFor)
        case handoff(queue: String, message: Template?)
        /// `ai:`, `webhook:` and `use:` all become a connector action.
        case action(name: Located<String>, parameters: ParamValue?)
        case set([(String, SourcePosition, Expr)])
        /// `contact:`: the edit as a map expression of `set`, `unset`, `tag` and `untag`.
        case contact(Expr)
        case goto(Located<String>)
        case call(Located<String>)
        case end(Template?)
    }

    struct Ask: Sendable {
        var prompt: Template
        var validation: Value
        var invalid: Template?
        var retries: Int?
        var buttons: [Choice] = []
        var listButton: String?
        var rows: [Choice] = []
        var timeout: (seconds: Int, next: Located<String>)?
        var onInvalid: Located<String>?
        /// The type of the saved value.
        var resultType: Builtin.ValueType
    }

    enum Wait: Sendable {
        case duration(Int)
        case until(Template, timezone: String)
    }

    struct WaitFor: Sendable {
        var event: String
        var match: Expr
        var timeout: (seconds: Int, next: Located<String>)?
    }

    var id: String
    var location: SourcePosition
    var kind: Kind
    var save: Located<String>?
    var next: [Branch] = []
    var onError: Located<String>?
    /// Where a message from the contact during a `wait` or `wait_for` goes (without it, such a message is kept and
    /// the wait goes on).
    var onMessage: Located<String>?

    var kindName: String {
        switch kind {
        case .text: "text"
        case .ask: "ask"
        case .condition: "condition"
        case .wait: "wait"
        case .waitFor: "wait_for"
        case .handoff: "handoff"
        case .action(let name, _): name.value == "ai.chat" ? "ai" : (name.value == "http.request" ? "webhook" : "use")
        case .set: "set"
        case .contact: "contact"
        case .goto: "goto"
        case .call: "call"
        case .end: "end"
        }
    }

    /// Whether running this block always stops the turn to wait for the outside world.
    var waits: Bool {
        switch kind {
        case .ask, .wait, .waitFor, .handoff: true
        default: false
        }
    }

    /// Every block this one can continue to, with where the reference is written.
    var successors: [Located<String>] {
        var out = next.map(\.target)
        switch kind {
        case .ask(let a):
            if let t = a.timeout { out.append(t.next) }
            if let t = a.onInvalid { out.append(t) }
        case .waitFor(let w):
            if let t = w.timeout { out.append(t.next) }
        case .goto(let t), .call(let t):
            out.append(t)
        default: break
        }
        if let e = onError { out.append(e) }
        if let m = onMessage { out.append(m) }
        return out
    }
}
