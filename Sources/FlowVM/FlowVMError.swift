/// The FlowVM module's one public error: a stable code, a message for people, and context.
///
/// It is thrown when decoding bytecode or continuations fails, and it is the reason a conversation
/// fails at run time (carried in `Continuation.Status.failed`). Messages never hold secrets.
public struct FlowVMError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable error codes; flows see them as `error.code` in an `on_error` block.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// Bytes are not a program or continuation this version can read.
        case corruptEncoding = "corrupt_encoding"
        /// The program's format version is newer than this runtime.
        case unsupportedVersion = "unsupported_version"
        /// A continuation belongs to another program.
        case programMismatch = "program_mismatch"
        /// An expression failed at run time (wrong types, bad regex, division by zero...).
        case expression = "expression_error"
        /// A turn ran more instructions than its budget: the flow loops without waiting.
        case budgetExhausted = "budget_exhausted"
        /// A reply kept failing validation after all retries.
        case inputInvalid = "input_invalid"
        /// A connector action failed.
        case effectFailed = "effect_failed"
        /// `call:` nested too deep.
        case callDepth = "call_depth"
        /// A value grew past the runtime's size limits.
        case valueTooLarge = "value_too_large"
        /// An event cannot be applied to the continuation (for example, after the conversation ended).
        case invalidEvent = "invalid_event"
        /// A `contact:` block's edit was refused (a malformed tag or attribute, or more than a contact may hold).
        case contactInvalid = "contact_invalid"
        /// A flow raised an error on purpose.
        case raised = "raised"
    }

    public var code: Code
    public var message: String
    /// The block the error happened in, when known.
    public var block: String?
    /// For `effect_failed`: the connector's own code (`http_404`, `whatsapp_131047`, `stripe_card_declined`...).
    public var reason: String?

    public init(_ code: Code, _ message: String, block: String? = nil, reason: String? = nil) {
        self.code = code
        self.message = message
        self.block = block
        self.reason = reason
    }

    public var description: String {
        if let block { return "\(code.rawValue) in block '\(block)': \(message)" }
        return "\(code.rawValue): \(message)"
    }

    /// The value a flow's `error` variable holds in an `on_error` block.
    /// `{code, message, block}`, and for `effect_failed` the connector's own code as `reason` (`http_404`,
    /// `whatsapp_131047`, `stripe_card_declined`...), so a flow can branch on what went wrong.
    public var value: Value {
        var v: [String: Value] = ["code": .string(code.rawValue), "message": .string(message), "block": block.map(Value.string) ?? .null]
        if let reason { v["reason"] = .string(reason) }
        return .map(v)
    }
}
