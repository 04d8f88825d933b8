import FlowVM

/// Where a conversation stands, as the API and the store show it.
public enum ConversationStatus: String, Sendable, Hashable, CaseIterable {
    /// Created, first turn not yet run.
    case active
    /// Waiting for a reply, a timer, an event or a connector result.
    case waiting
    /// With a human agent.
    case handoff
    /// Stopped on an error, with the reason; can be retried or ended.
    case failed
    case ended
    /// Started from outside for a later time (`POST /v1/flows/{name}/start` with `at`): its first turn runs then, when
    /// the contact can still be reached. It does not hold the contact's slot until it starts.
    case scheduled

    /// Whether the conversation still holds its contact's slot (one open conversation per contact and channel).
    public var isOpen: Bool { self == .active || self == .waiting || self == .handoff }

    init(_ status: Continuation.Status) {
        switch status {
        case .waiting(.handoff): self = .handoff
        case .waiting: self = .waiting
        case .ended: self = .ended
        case .failed: self = .failed
        }
    }
}

/// A conversation row: the durable home of a continuation.
public struct ConversationRecord: Sendable, Hashable {
    public var id: String
    public var tenant: String
    public var channel: String
    public var contact: String
    public var flow: String
    public var programHash: String
    /// Nil until the first turn has run.
    public var continuation: Continuation?
    public var status: ConversationStatus
    /// The reason, when failed.
    public var failure: String?
    /// Grows with every write: a change made elsewhere since this record was read is detected with it.
    public var version: Int64 = 0
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public init(id: String, tenant: String, channel: String, contact: String, flow: String, programHash: String,
                continuation: Continuation? = nil, status: ConversationStatus = .active, failure: String? = nil,
                createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id
        self.tenant = tenant
        self.channel = channel
        self.contact = contact
        self.flow = flow
        self.programHash = programHash
        self.continuation = continuation
        self.status = status
        self.failure = failure
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// `event-name:key` for a conversation waiting on `wait_for`, so external events find it.
    public var waitKey: String? {
        if case .event(let name, let key, _)? = continuation?.wait { return "\(name):\(key)" }
        return nil
    }
}

/// What an event row carries.
public enum EventBody: Sendable, Hashable {
    case message(InboundMessage)
    case external(name: String, key: String, payload: Value)
    case effectResult(id: UInt64, result: EffectResult)
    case handback
    /// An operator asks a failed conversation to run its failed block again.
    case retry
    /// An operator ends the conversation.
    case cancel
    /// The conversation was started from outside (`POST /v1/flows/{name}/start`) with these variables: the first
    /// event of such a conversation, and only ever the first.
    case start(variables: [String: Value])

    /// The event's kind as stored.
    public var kind: String {
        switch self {
        case .message: "message"
        case .external: "external"
        case .effectResult: "effect"
        case .handback: "handback"
        case .retry: "retry"
        case .cancel: "cancel"
        case .start: "start"
        }
    }

    /// The VM event.
    public var vmEvent: Event {
        switch self {
        case .message(let m): .message(m)
        case .external(let n, let k, let p): .external(name: n, key: k, payload: p)
        case .effectResult(let id, let r): .effectResult(id: id, result: r)
        case .handback, .retry, .cancel, .start: .handback
        }
    }

    /// A JSON form for storage and traces.
    public var value: Value {
        switch self {
        case .message(let m):
            ["kind": "message", "text": .string(m.text), "payload": m.payload.map(Value.string) ?? .null,
             "type": .string(m.kind), "data": m.data, "reply_window": m.replyWindow.map { .number(Double($0)) } ?? .null]
        case .external(let n, let k, let p): ["kind": "external", "name": .string(n), "key": .string(k), "payload": p]
        case .effectResult(let id, .success(let v)): ["kind": "effect", "id": .number(Double(id)), "ok": true, "value": v]
        case .effectResult(let id, .failure(let code, let message)):
            ["kind": "effect", "id": .number(Double(id)), "ok": false, "code": .string(code), "message": .string(message)]
        case .handback: ["kind": "handback"]
        case .retry: ["kind": "retry"]
        case .cancel: ["kind": "cancel"]
        case .start(let variables): ["kind": "start", "variables": .map(variables)]
        }
    }

    /// Reads `value` back.
    public init?(value v: Value) {
        switch v["kind"].text {
        case "message":
            var window: Int64?
            if case .number(let w) = v["reply_window"] { window = Int64(w) }
            self = .message(InboundMessage(text: v["text"].text, payload: v["payload"] == .null ? nil : v["payload"].text,
                                           kind: v["type"] == .null ? "text" : v["type"].text, data: v["data"],
                                           replyWindow: window))
        case "external": self = .external(name: v["name"].text, key: v["key"].text, payload: v["payload"])
        case "effect":
            guard case .number(let n) = v["id"] else { return nil }
            if v["ok"] == .bool(true) {
                self = .effectResult(id: UInt64(n), result: .success(v["value"]))
            } else {
                self = .effectResult(id: UInt64(n), result: .failure(code: v["code"].text, message: v["message"].text))
            }
        case "handback": self = .handback
        case "retry": self = .retry
        case "cancel": self = .cancel
        case "start":
            guard case .map(let variables) = v["variables"] else { return nil }
            self = .start(variables: variables)
        default: return nil
        }
    }
}

/// An unprocessed event of a conversation, in arrival order.
public struct PendingEvent: Sendable, Hashable {
    /// Arrival order across the store.
    public var sequence: Int64
    public var body: EventBody
    public var receivedAt: Timestamp

    public init(sequence: Int64, body: EventBody, receivedAt: Timestamp) {
        self.sequence = sequence
        self.body = body
        self.receivedAt = receivedAt
    }
}

/// A row for the outbox: an effect to perform at least once, keyed for idempotency.
public struct OutboxEntry: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// A message to the contact over the conversation's channel.
        case send
        /// A connector action whose result the flow waits for.
        case perform
    }

    public var kind: Kind
    /// `conversation-id:effect-id`: stable across retries and crashes.
    public var idempotencyKey: String
    public var effectID: UInt64
    /// The connector action (`channel.send` for sends).
    public var action: String
    public var payload: Value

    public init(kind: Kind, idempotencyKey: String, effectID: UInt64, action: String, payload: Value) {
        self.kind = kind
        self.idempotencyKey = idempotencyKey
        self.effectID = effectID
        self.action = action
        self.payload = payload
    }
}

/// One turn, as kept for the conversation's trace.
public struct TraceEntry: Sendable, Hashable {
    public var event: Value
    public var visited: [String]
    public var effects: Value
    public var wait: Value
    public var status: ConversationStatus
    public var at: Timestamp

    public init(event: Value, visited: [String], effects: Value, wait: Value, status: ConversationStatus, at: Timestamp) {
        self.event = event
        self.visited = visited
        self.effects = effects
        self.wait = wait
        self.status = status
        self.at = at
    }
}

/// A message in a conversation's history (both directions).
public struct MessageRecord: Sendable, Hashable {
    public enum Direction: String, Sendable, Hashable {
        case inbound = "in"
        case outbound = "out"
    }
    public var direction: Direction
    public var text: String
    /// Buttons, list rows, payload ids...
    public var extra: Value
    public var at: Timestamp

    public init(direction: Direction, text: String, extra: Value = .null, at: Timestamp) {
        self.direction = direction
        self.text = text
        self.extra = extra
        self.at = at
    }
}

extension OutboundMessage {
    /// The JSON form of a message the outbox and the message history keep.
    public var value: Value {
        var v: [String: Value] = ["text": .string(text)]
        if !buttons.isEmpty { v["buttons"] = .list(buttons.map(Value.string)) }
        if let listButton {
            v["list"] = ["button": .string(listButton), "rows": .list(rows.map {
                ["id": .string($0.id), "title": .string($0.title), "description": $0.description.map(Value.string) ?? .null]
            })]
        }
        return .map(v)
    }
}

extension Wait {
    /// The JSON form for traces.
    public var value: Value {
        switch self {
        case .input(let t): ["kind": "input", "timeout_at": t.map { .string($0.iso8601) } ?? .null]
        case .timer(let t): ["kind": "timer", "at": .string(t.iso8601)]
        case .event(let n, let k, let t): ["kind": "event", "name": .string(n), "key": .string(k), "timeout_at": t.map { .string($0.iso8601) } ?? .null]
        case .handoff(let q): ["kind": "handoff", "queue": .string(q)]
        case .effect(let id): ["kind": "effect", "id": .number(Double(id))]
        }
    }
}
