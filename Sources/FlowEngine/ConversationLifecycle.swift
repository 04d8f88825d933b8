import FlowVM

/// The engine's rules for what may happen to a conversation from outside its turns, as pure functions the store
/// applies inside its transactions (in the style of `TurnMachine` and `DeliveryMachine`): tested without I/O.
public enum ConversationLifecycle {
    /// Whether deciding `request` for a conversation in `status` needs to know if its contact has another open
    /// conversation on the channel (a retried conversation takes the contact's slot back).
    public static func needsOtherOpenCheck(_ request: EventBody, status: ConversationStatus) -> Bool {
        if case .retry = request { return status == .failed }
        return false
    }

    /// Why an operator's `request` cannot be posted to a conversation in `status`, or nil when it can. Messages,
    /// results, events and hand-backs are always stored (a turn decides what they mean).
    public static func refusal(_ request: EventBody, status: ConversationStatus, otherOpenConversation: Bool) -> EngineError? {
        // Before its time a scheduled conversation can only be cancelled (which ends it without a turn).
        if status == .scheduled, request != .cancel { return EngineError(.conflict, "the conversation has not started yet") }
        switch request {
        case .retry:
            guard status == .failed else { return EngineError(.conflict, "only a failed conversation can be retried") }
            if otherOpenConversation { return EngineError(.conflict, "the contact has another open conversation") }
            return nil
        case .cancel:
            return status == .ended ? EngineError(.conflict, "the conversation has already ended") : nil
        default:
            return nil
        }
    }

    /// What a dead-lettered delivery does to its conversation.
    public enum DeadLetter: Sendable, Hashable {
        /// A connector action's failure goes to the flow, which waits for it: `error.reason` is the connector's code,
        /// and the flow's `on_error` decides.
        case failureToFlow(code: String, message: String)
        /// A message that can never be delivered stops an open conversation, visibly, with the reason.
        case failConversation(reason: String)
    }

    public static func deadLetter(_ kind: OutboxEntry.Kind, error: ConnectorError) -> DeadLetter {
        switch kind {
        case .perform: .failureToFlow(code: error.code, message: error.message)
        case .send: .failConversation(reason: "delivery failed: \(error.description)")
        }
    }
}
