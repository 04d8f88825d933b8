/// What a conversation is waiting for when the VM suspends it.
public enum Wait: Sendable, Hashable {
    /// A reply from the contact, with an optional deadline after which the ask's timeout branch runs.
    case input(timeoutAt: Timestamp?)
    /// A timer (`wait:`).
    case timer(at: Timestamp)
    /// An external event (`wait_for:`) with its correlation key.
    case event(name: String, key: String, timeoutAt: Timestamp?)
    /// A human agent, until the conversation is handed back.
    case handoff(queue: String)
    /// The result of the connector call the VM asked for in effect `id`.
    case effect(id: UInt64)

    /// The instant a timer event should be delivered, if this wait has one: the engine's `wake_at`.
    public var deadline: Timestamp? {
        switch self {
        case .input(let t): t
        case .timer(let t): t
        case .event(_, _, let t): t
        case .handoff, .effect: nil
        }
    }

    /// A short name: `input`, `timer`, `event`, `handoff`, `effect`.
    public var kind: String {
        switch self {
        case .input: "input"
        case .timer: "timer"
        case .event: "event"
        case .handoff: "handoff"
        case .effect: "effect"
        }
    }
}

/// The complete, serialisable state of one conversation's run: resuming it needs only this and the program.
public struct Continuation: Sendable, Hashable {
    /// Where a run stands.
    public enum Status: Sendable, Hashable {
        case waiting(Wait)
        case ended
        case failed(FlowVMError)
    }

    /// The program this conversation runs; a continuation never moves programs by accident.
    public var programHash: String
    public var pc: Int
    public var stack: [Value]
    /// Values by variable slot.
    public var variables: [Value]
    /// Return addresses of `call:`.
    public var callStack: [Int]
    /// Index of the block being run (for `on_error` routing and traces), or -1 before the first block.
    public var block: Int
    /// Counts effects; with the conversation id it keys them for idempotency.
    public var step: UInt64
    public var status: Status

    public init(programHash: String, variableCount: Int) {
        self.programHash = programHash
        pc = 0
        stack = []
        variables = Array(repeating: .null, count: variableCount)
        callStack = []
        block = -1
        step = 0
        status = .waiting(.input(timeoutAt: nil))
    }

    /// The wait, when the conversation is waiting.
    public var wait: Wait? {
        if case .waiting(let w) = status { return w }
        return nil
    }

    static let formatVersion: UInt8 = 1

    /// Encodes the continuation; `init(decoding:)` restores it exactly.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.u8(Continuation.formatVersion)
        w.string(programHash)
        w.uvarint(pc)
        w.uvarint(stack.count)
        for v in stack { w.value(v) }
        w.uvarint(variables.count)
        for v in variables { w.value(v) }
        w.uvarint(callStack.count)
        for r in callStack { w.uvarint(r) }
        w.svarint(Int64(block))
        w.uvarint(step)
        switch status {
        case .ended: w.u8(0)
        case .failed(let e):
            // 3 carries the connector's reason; 1 (without it) is what earlier versions wrote, and is still read.
            w.u8(e.reason == nil ? 1 : 3)
            w.string(e.code.rawValue)
            w.string(e.message)
            w.string(e.block ?? "")
            if let reason = e.reason { w.string(reason) }
        case .waiting(let wait):
            w.u8(2)
            func time(_ t: Timestamp?) {
                if let t { w.u8(1); w.svarint(t.milliseconds) } else { w.u8(0) }
            }
            switch wait {
            case .input(let t): w.u8(0); time(t)
            case .timer(let t): w.u8(1); time(t)
            case .event(let name, let key, let t): w.u8(2); w.string(name); w.string(key); time(t)
            case .handoff(let q): w.u8(3); w.string(q)
            case .effect(let id): w.u8(4); w.uvarint(id)
            }
        }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        let version = try r.u8()
        guard version == Continuation.formatVersion else {
            throw FlowVMError(.unsupportedVersion, "continuation format \(version) is not \(Continuation.formatVersion)")
        }
        programHash = try r.string()
        pc = try r.int()
        stack = try (0..<r.int()).map { _ in try r.value() }
        variables = try (0..<r.int()).map { _ in try r.value() }
        callStack = try (0..<r.int()).map { _ in try r.int() }
        block = Int(try r.svarint())
        step = try r.uvarint()
        switch try r.u8() {
        case 0: status = .ended
        case let tag where tag == 1 || tag == 3:
            let raw = try r.string()
            guard let code = FlowVMError.Code(rawValue: raw) else {
                throw FlowVMError(.corruptEncoding, "unknown error code in continuation")
            }
            let message = try r.string()
            let block = try r.string()
            let reason = tag == 3 ? try r.string() : nil
            status = .failed(FlowVMError(code, message, block: block.isEmpty ? nil : block, reason: reason))
        case 2:
            func time() throws -> Timestamp? {
                try r.u8() == 0 ? nil : Timestamp(milliseconds: try r.svarint())
            }
            switch try r.u8() {
            case 0: status = .waiting(.input(timeoutAt: try time()))
            case 1:
                guard let t = try time() else { throw FlowVMError(.corruptEncoding, "timer without time") }
                status = .waiting(.timer(at: t))
            case 2: status = .waiting(.event(name: try r.string(), key: try r.string(), timeoutAt: try time()))
            case 3: status = .waiting(.handoff(queue: try r.string()))
            case 4: status = .waiting(.effect(id: try r.uvarint()))
            default: throw FlowVMError(.corruptEncoding, "unknown wait kind")
            }
        default: throw FlowVMError(.corruptEncoding, "unknown status")
        }
        guard r.isAtEnd else { throw FlowVMError(.corruptEncoding, "trailing bytes after continuation") }
    }
}
