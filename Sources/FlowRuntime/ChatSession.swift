import FlowVM

/// Runs a flow against a person or a script, with simulated connectors and a simulated clock: the engine of
/// `flowline chat` and the builder's preview. Every outward thing becomes one transcript line:
/// `bot:`, `call:`, `handoff:`, `wait:`, `end:`, `failed:`.
public struct ChatSession: Sendable {
    public let vm: VM
    public private(set) var continuation: Continuation
    /// The simulated clock; waits jump it forward.
    public private(set) var now: Timestamp
    public var simulator: Simulator
    /// Effects run so far, for tests.
    public private(set) var effects: [Effect] = []
    /// The blocks run so far, in order: the preview draws them on the canvas, the last as the one waiting.
    public private(set) var visited: [String] = []
    private let context: VM.StartContext

    public init(program: Program, simulator: Simulator = Simulator(), now: Timestamp,
                contact: Value = ["id": "sim-contact", "name": "Ana", "phone": "+5511999990000", "attributes": [:], "tags": []]) {
        vm = VM(program: program)
        self.simulator = simulator
        self.now = now
        context = VM.StartContext(contact: contact, conversation: ["id": "sim-conversation"], channel: "chat")
        continuation = Continuation(programHash: "", variableCount: 0)
    }

    /// Whether the conversation has ended or failed.
    public var isFinished: Bool { continuation.wait == nil }

    /// Starts the flow; returns the transcript lines of its first turn.
    public mutating func start() -> [String] {
        let r = vm.start(context, now: now)
        return absorb(r)
    }

    /// One line of input: a message, or a command (`/wait`, `/event NAME [JSON]`, `/handback`).
    public mutating func input(_ line: String) -> [String] {
        guard let wait = continuation.wait else { return ["note: the conversation is over"] }
        if line.hasPrefix("/") {
            let parts = line.split(separator: " ", maxSplits: 2).map(String.init)
            switch parts[0] {
            case "/wait":
                guard let deadline = wait.deadline else { return ["note: nothing is waiting on a timer"] }
                let passed = ChatSession.duration((deadline.milliseconds - now.milliseconds) / 1000)
                now = deadline
                return ["wait: \(passed) pass with no reply"] + deliver(.timer)
            case "/event":
                guard parts.count >= 2 else { return ["note: usage /event NAME [JSON]"] }
                guard case .event(let name, let key, _) = wait, name == parts[1] else {
                    return ["note: the flow is not waiting for \(parts[1])"]
                }
                let payload = parts.count > 2 ? (Value(json: parts[2]) ?? .string(parts[2])) : ["key": .string(key)]
                return deliver(.external(name: name, key: key, payload: payload))
            case "/handback":
                return deliver(.handback)
            default:
                return ["note: unknown command \(parts[0]); commands are /wait, /event NAME [JSON], /handback"]
            }
        }
        return deliver(.message(InboundMessage(text: line)))
    }

    /// `waiting: input`, `waiting: event NAME`, `waiting: handoff QUEUE`... for the end of input.
    public var waitingLine: String? {
        switch continuation.wait {
        case .input?: "waiting: input"
        case .event(let name, let key, _)?: "waiting: event \(name) (\(key))"
        case .handoff(let q)?: "waiting: handoff \(q)"
        case .timer?: "waiting: timer"
        case .effect?: "waiting: effect"
        case nil: nil
        }
    }

    private mutating func deliver(_ event: Event) -> [String] {
        do {
            let r = try vm.step(continuation, event: event, now: now)
            if r.ignored { return ["note: the flow is not waiting for that"] }
            return absorb(r)
        } catch {
            return ["failed: \(error)"]
        }
    }

    /// Prints a turn's effects, answers connector calls, fast-forwards timers, until the flow waits for the person.
    private mutating func absorb(_ first: StepResult) -> [String] {
        var lines: [String] = []
        var r = first
        while true {
            continuation = r.continuation
            visited += r.visited
            var pending: (UInt64, EffectResult)?
            for e in r.effects {
                effects.append(e)
                switch e {
                case .send(_, let m): lines.append(ChatSession.line(m))
                case .handoff(_, let q): lines.append("handoff: queue \(q)")
                case .contact(_, let patch): lines.append("contact: \(patch.value.jsonText)")
                case .perform(let id, let action, let parameters):
                    let result = simulator.perform(action: action, parameters: parameters, id: id)
                    switch result {
                    case .success(let v): lines.append("call: \(action) \(parameters.jsonText) -> \(v.jsonText)")
                    case .failure(_, let m): lines.append("call: \(action) \(parameters.jsonText) -> error: \(m)")
                    }
                    pending = (id, result)
                }
            }
            let event: Event
            switch continuation.status {
            case .ended:
                lines.append("end: the flow finished")
                return lines
            case .failed(let e):
                lines.append("failed: \(e)")
                return lines
            case .waiting(.effect(let id)):
                guard let (pid, result) = pending, pid == id else {
                    lines.append("failed: no result for effect \(id)")
                    return lines
                }
                event = .effectResult(id: id, result: result)
            case .waiting(.timer(let at)):
                lines.append("wait: \(ChatSession.duration((at.milliseconds - now.milliseconds) / 1000)) until \(at.iso8601)")
                now = max(now, at)
                event = .timer
            case .waiting:
                return lines
            }
            do {
                r = try vm.step(continuation, event: event, now: now)
            } catch {
                lines.append("failed: \(error)")
                return lines
            }
        }
    }

    /// `bot: text [Button] [Button]`, newlines shown as `\n` so one message is one line.
    static func line(_ m: OutboundMessage) -> String {
        var s = "bot: " + m.text.replacingOccurrences(of: "\n", with: "\\n")
        for b in m.buttons { s += " [\(b)]" }
        for r in m.rows { s += " [\(r.title)]" }
        return s
    }

    /// `1d2h`, `30m`, `45s`.
    public static func duration(_ seconds: Int64) -> String {
        if seconds <= 0 { return "0s" }
        var s = seconds, out = ""
        for (unit, size) in [("d", Int64(86_400)), ("h", 3600), ("m", 60), ("s", 1)] where s >= size {
            out += "\(s / size)\(unit)"
            s %= size
        }
        return out
    }
}

import Foundation
