import FlowVM

/// Simulated connector results for `flowline chat` and the builder's preview: no network, deterministic.
///
/// Built-in actions answer with plausible data; `mocks` override them per action with a value, a list of
/// values used in turn, or `{"error": "message"}` to simulate a failure.
public struct Simulator: Sendable {
    public var mocks: [String: Value]
    private var used: [String: Int] = [:]

    public init(mocks: Value = .null) {
        if case .map(let m) = mocks { self.mocks = m } else { self.mocks = [:] }
    }

    /// The result of `action` called with `parameters` as effect `id`.
    public mutating func perform(action: String, parameters: Value, id: UInt64) -> EffectResult {
        if var mock = mocks[action] {
            if case .list(let sequence) = mock, !sequence.isEmpty {
                let n = used[action, default: 0]
                used[action] = n + 1
                mock = sequence[min(n, sequence.count - 1)]
            }
            if case .map(let m) = mock, m.count == 1, let e = m["error"] {
                return .failure(code: "simulated", message: e.text)
            }
            return .success(mock)
        }
        return .success(Simulator.builtin(action: action, parameters: parameters, id: id))
    }

    static func builtin(action: String, parameters: Value, id: UInt64) -> Value {
        switch action {
        case "ai.chat":
            if case .map(let fields) = parameters["extract"] {
                return .map(fields.mapValues { t in
                    switch t.text {
                    case "number", "integer": .number(0)
                    case "bool", "boolean": .bool(false)
                    default: .string("")
                    }
                })
            }
            return .string("(simulated AI answer to: \(parameters["prompt"].text.prefix(80)))")
        case "http.request":
            return ["status": 200, "body": ["ok": true, "id": .string("sim-\(id)")], "headers": [:]]
        case "stripe.checkout":
            return ["id": .string("cs_test_sim\(id)"), "url": .string("https://checkout.stripe.com/c/pay/cs_test_sim\(id)")]
        case "stripe.payment_link":
            return ["id": .string("plink_sim\(id)"), "url": .string("https://buy.stripe.com/test_sim\(id)")]
        case "whatsapp.template":
            return ["id": .string("wamid.sim\(id)")]
        case "email.send":
            return ["id": .string("<sim\(id)@flowline.local>")]
        case "whatsapp.media":
            return ["id": .string("wamid.sim\(id)")]
        case "n8n.trigger":
            guard parameters["wait"] == "callback" else { return ["ok": true] }
            let token = "sim-resume-\(id)"
            return ["status": "started", "resume_token": .string(token), "resume_url": .string("https://flowline.invalid/webhooks/resume/\(token)"),
                    "response": ["message": "Workflow was started"]]
        default:
            return ["ok": true]
        }
    }
}
