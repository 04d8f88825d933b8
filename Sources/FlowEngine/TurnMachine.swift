import FlowVM

/// The lifecycle of one turn, as a pure function: given a conversation, its pending events in arrival order and
/// the time, it decides what the VM sees, what is written and what waits. The store runs it inside the turn's
/// transaction; tests run it with no I/O at all.
public enum TurnMachine {
    /// Everything a turn reads.
    public struct Input: Sendable {
        public var conversation: ConversationRecord
        public var events: [PendingEvent]
        public var now: Timestamp
        /// Seconds a burst of messages is gathered into one turn (the flow's `debounce:`).
        public var debounce: Int64?
        /// Who the contact is, for a conversation's first turn.
        public var contact: Value

        public init(conversation: ConversationRecord, events: [PendingEvent], now: Timestamp, debounce: Int64? = nil,
                    contact: Value = .map([:])) {
            self.conversation = conversation
            self.events = events
            self.now = now
            self.debounce = debounce
            self.contact = contact
        }
    }

    /// What happened to an event.
    public enum Disposition: String, Sendable, Hashable {
        /// It started the conversation.
        case started
        /// The flow took it.
        case applied
        /// It did not fit the wait (a message during a `wait:`, a stale result); kept in history.
        case ignored
        /// It arrived after the conversation ended: the engine routes it afresh (it may start a new conversation).
        case reroute
    }

    /// Everything a turn writes, in one transaction.
    public struct Outcome: Sendable {
        public var conversation: ConversationRecord
        public var processed: [(sequence: Int64, disposition: Disposition)] = []
        public var outbox: [OutboxEntry] = []
        public var messages: [MessageRecord] = []
        public var traces: [TraceEntry] = []
        /// The flow's edits to its contact's record, in the order it made them; committed with the turn.
        public var contactEdits: [ContactPatch] = []
        /// When this conversation needs a turn again without a new event: its wait's deadline, or the end of a
        /// debounce window. Nil when only a new event can move it.
        public var dueAt: Timestamp?

        public init(conversation: ConversationRecord) {
            self.conversation = conversation
        }
    }

    /// Most timers one turn fires back to back (a conversation asleep through several waits).
    static let maxTimersPerTurn = 1000

    public static func run(_ input: Input, vm: VM) -> Outcome {
        var out = Outcome(conversation: input.conversation)
        var conversation = input.conversation
        var events = input.events[...]

        // A burst still arriving: wait for the window to close, then take it as one turn.
        if let window = input.debounce, window > 0,
           let lastMessage = events.last(where: { if case .message = $0.body { true } else { false } }),
           lastMessage.receivedAt.adding(seconds: window) > input.now {
            out.dueAt = lastMessage.receivedAt.adding(seconds: window)
            return out
        }

        var clock = conversation.continuation == nil ? conversation.createdAt : conversation.updatedAt
        func absorb(_ r: StepResult, event: Value, at time: Timestamp) {
            conversation.continuation = r.continuation
            for effect in r.effects {
                let key = "\(conversation.id):\(effect.id)"
                switch effect {
                case .send(let id, let message):
                    // The flow version that sent it: what a channel with a messaging window sends once it has closed (the
                    // flow's template) is its driver's business, and this saves it reading the conversation.
                    let payload: [String: Value] = [
                        "channel": .string(conversation.channel), "contact": .string(conversation.contact), "message": message.value,
                        "program": .string(conversation.programHash),
                    ]
                    out.outbox.append(OutboxEntry(kind: .send, idempotencyKey: key, effectID: id, action: "channel.send", payload: .map(payload)))
                    out.messages.append(MessageRecord(direction: .outbound, text: message.text, extra: message.value, at: time))
                case .perform(let id, let action, let parameters):
                    out.outbox.append(OutboxEntry(kind: .perform, idempotencyKey: key, effectID: id, action: action, payload: parameters))
                case .handoff:
                    break  // the conversation's status says it; agents see it in the handoff inbox
                case .contact(_, let patch):
                    out.contactEdits.append(patch)
                }
            }
            let status = ConversationStatus(r.continuation.status)
            out.traces.append(TraceEntry(
                event: event, visited: r.visited, effects: .list(r.effects.map(describe)),
                wait: r.continuation.wait?.value ?? .null, status: status, at: time))
        }

        func fireTimers(upTo limit: Timestamp) {
            var fired = 0
            while fired < maxTimersPerTurn, let c = conversation.continuation, let deadline = c.wait?.deadline, deadline <= limit,
                  let r = try? vm.step(c, event: .timer, now: deadline), !r.ignored {
                clock = max(clock, deadline)
                absorb(r, event: ["kind": "timer", "at": .string(deadline.iso8601)], at: deadline)
                fired += 1
            }
        }

        // The first turn: the message that matched the trigger starts the flow, or the start requested from outside.
        if conversation.continuation == nil {
            var first: InboundMessage?
            var variables: [String: Value] = [:]
            var started: Value = ["kind": "start"]
            if let e = events.first, case .message(let m) = e.body {
                first = m
                clock = max(clock, e.receivedAt)
                out.processed.append((e.sequence, .started))
                out.messages.append(MessageRecord(direction: .inbound, text: m.text, extra: m.value, at: e.receivedAt))
                events = events.dropFirst()
                started = e.body.value
            } else if let e = events.first, case .start(let given) = e.body {
                variables = given
                clock = max(clock, e.receivedAt)
                out.processed.append((e.sequence, .started))
                events = events.dropFirst()
                started = e.body.value
            }
            let context = VM.StartContext(contact: input.contact, conversation: ["id": .string(conversation.id)],
                                          channel: .string(conversation.channel), message: first, variables: variables)
            absorb(vm.start(context, now: clock), event: started, at: clock)
        }

        while var event = events.first {
            // Operator events work in any state.
            if event.body == .cancel || event.body == .retry, let c = conversation.continuation {
                events = events.dropFirst()
                if event.body == .cancel {
                    if c.wait != nil || isFailed(c) {
                        var ended = c
                        ended.status = .ended
                        conversation.continuation = ended
                        out.traces.append(TraceEntry(event: event.body.value, visited: [], effects: [], wait: .null, status: .ended,
                                                     at: max(clock, event.receivedAt)))
                        conversation.failure = nil
                    }
                    out.processed.append((event.sequence, .applied))
                } else if isFailed(c), let r = try? vm.retry(c, now: max(clock, event.receivedAt)) {
                    conversation.failure = nil
                    absorb(r, event: event.body.value, at: max(clock, event.receivedAt))
                    out.processed.append((event.sequence, .applied))
                } else {
                    out.processed.append((event.sequence, .ignored))
                }
                continue
            }
            if case .start = event.body {
                // Only a conversation's first event starts it; another is kept as history.
                events = events.dropFirst()
                out.processed.append((event.sequence, .ignored))
                continue
            }
            guard let c = conversation.continuation, let wait = c.wait else {
                // Ended or failed: later messages go back to routing; anything else is kept as history only.
                for rest in events {
                    if case .message = rest.body { out.processed.append((rest.sequence, .reroute)) } else {
                        out.processed.append((rest.sequence, .ignored))
                    }
                }
                events = []
                break
            }
            if case .effect(let id) = wait, !isResult(event.body, for: id) {
                // The flow is between steps: its connector result goes first; messages stay queued, in order, behind it.
                guard let i = events.firstIndex(where: { isResult($0.body, for: id) }) else { break }
                event = events[i]
                events.remove(at: i)
                events.insert(event, at: events.startIndex)
            }
            fireTimers(upTo: event.receivedAt)
            guard let current = conversation.continuation, current.wait != nil else { continue }

            var body = event.body
            var consumed = [event]
            events = events.dropFirst()
            if case .message(var m) = body, input.debounce ?? 0 > 0 {
                // One turn for the burst: the messages' texts, in order, as one.
                while let next = events.first, case .message(let n) = next.body {
                    m.text += "\n" + n.text
                    m.payload = n.payload ?? m.payload
                    consumed.append(next)
                    events = events.dropFirst()
                }
                body = .message(m)
            }
            if case .message = body {
                for e in consumed {
                    if case .message(let m) = e.body {
                        out.messages.append(MessageRecord(direction: .inbound, text: m.text, extra: m.value, at: e.receivedAt))
                    }
                }
            }
            let time = max(clock, event.receivedAt)
            guard let r = try? vm.step(current, event: body.vmEvent, now: time) else {
                for e in consumed { out.processed.append((e.sequence, .ignored)) }
                continue
            }
            if r.ignored {
                for e in consumed { out.processed.append((e.sequence, .ignored)) }
                continue
            }
            clock = time
            for e in consumed { out.processed.append((e.sequence, .applied)) }
            absorb(r, event: body.value, at: time)
        }
        fireTimers(upTo: input.now)

        conversation.status = conversation.continuation.map { ConversationStatus($0.status) } ?? .active
        if case .failed(let e)? = conversation.continuation?.status { conversation.failure = e.description }
        conversation.updatedAt = max(clock, conversation.updatedAt)
        out.conversation = conversation
        out.dueAt = events.isEmpty ? conversation.continuation?.wait?.deadline : nil
        return out
    }

    private static func isFailed(_ c: Continuation) -> Bool {
        if case .failed = c.status { return true }
        return false
    }

    private static func isResult(_ body: EventBody, for id: UInt64) -> Bool {
        if case .effectResult(let rid, _) = body { return rid == id }
        return false
    }

    /// An effect as the trace shows it.
    static func describe(_ e: Effect) -> Value {
        switch e {
        case .send(let id, let m): ["send": m.value, "id": .number(Double(id))]
        case .perform(let id, let a, let p): ["perform": .string(a), "parameters": p, "id": .number(Double(id))]
        case .handoff(let id, let q): ["handoff": .string(q), "id": .number(Double(id))]
        case .contact(let id, let patch): ["contact": patch.value, "id": .number(Double(id))]
        }
    }
}
