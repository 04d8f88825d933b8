/// A message from the contact.
public struct InboundMessage: Sendable, Hashable {
    /// The text typed, or a button/list row's title.
    public var text: String
    /// The id of the button or list row chosen, when the channel reports one.
    public var payload: String?
    /// `text`, `button`, `list`, `image`, `audio`, `document`, `location`...
    public var kind: String
    /// Channel-specific extras (media id, coordinates...).
    public var data: Value
    /// Seconds after this message during which the channel lets anything be sent back (WhatsApp's 24-hour window),
    /// as its driver declares; nil when the channel has no such window. The VM only records it
    /// (`conversation.window_closes_at`); what a closed window means for a send is the channel's business.
    public var replyWindow: Int64?

    public init(text: String, payload: String? = nil, kind: String = "text", data: Value = .null, replyWindow: Int64? = nil) {
        self.text = text
        self.payload = payload
        self.kind = kind
        self.data = data
        self.replyWindow = replyWindow
    }

    /// The `message` variable a flow sees.
    public var value: Value {
        .map(["text": .string(text), "payload": payload.map(Value.string) ?? .null, "kind": .string(kind), "data": data])
    }
}

/// How a connector action ended.
public enum EffectResult: Sendable, Hashable {
    case success(Value)
    /// The action failed for good (retries are the engine's business, before this arrives).
    case failure(code: String, message: String)
}

/// Something that happened to a conversation; `VM.step` applies one event per turn.
public enum Event: Sendable, Hashable {
    case message(InboundMessage)
    /// A deadline passed; the VM checks the wait's deadline against its clock, so early or stale timers do nothing.
    case timer
    /// An external event for `wait_for` (a payment, an n8n callback...).
    case external(name: String, key: String, payload: Value)
    /// The result of the connector call made in effect `id`.
    case effectResult(id: UInt64, result: EffectResult)
    /// A human agent handed the conversation back to the flow.
    case handback
}

/// A message the flow sends.
public struct OutboundMessage: Sendable, Hashable {
    /// One row of a list message.
    public struct Row: Sendable, Hashable {
        public var id: String
        public var title: String
        public var description: String?
        public init(id: String, title: String, description: String? = nil) {
            self.id = id
            self.title = title
            self.description = description
        }
    }

    public var text: String
    /// Reply buttons (WhatsApp allows 3).
    public var buttons: [String]
    /// The label of the button that opens the list, when this is a list message.
    public var listButton: String?
    public var rows: [Row]

    public init(text: String, buttons: [String] = [], listButton: String? = nil, rows: [Row] = []) {
        self.text = text
        self.buttons = buttons
        self.listButton = listButton
        self.rows = rows
    }
}

/// Work the engine must do after a turn; `id` is the turn-independent step number that keys idempotency.
public enum Effect: Sendable, Hashable {
    case send(id: UInt64, message: OutboundMessage)
    /// Run a connector action; its result comes back as `Event.effectResult(id:)`.
    case perform(id: UInt64, action: String, parameters: Value)
    /// Put the conversation in a human queue.
    case handoff(id: UInt64, queue: String)
    /// Commit this edit to the contact's record with the turn.
    case contact(id: UInt64, patch: ContactPatch)

    public var id: UInt64 {
        switch self {
        case .send(let id, _), .perform(let id, _, _), .handoff(let id, _), .contact(let id, _): id
        }
    }
}

/// What one turn produced.
public struct StepResult: Sendable {
    public var continuation: Continuation
    public var effects: [Effect]
    /// Ids of the blocks entered, in order.
    public var visited: [String]
    /// Instructions executed.
    public var instructions: Int
    /// True when the event did not apply to the current wait and nothing changed.
    public var ignored: Bool
}
