import FlowEngine
import FlowVM
import Hummingbird

/// `GET` and `PATCH /v1/settings`: what a tenant sets for all its channels (opt-out words and reply, message
/// retention).
struct SettingsRoutes {
    let store: any TenantRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("settings", use: get)
        group.patch("settings", use: patch)
    }

    static func view(_ s: TenantSettings) -> Value {
        ["opt_out": ["words": .list(s.optOutWords.map(Value.string)), "reply": s.optOutReply.map(Value.string) ?? .null],
         "retention": ["messages_days": s.messageRetentionDays.map { .number(Double($0)) } ?? .null]]
    }

    @Sendable func get(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "reading settings needs a supervisor or an admin")
        return json(Self.view(try await engine.settings(caller.tenant)))
    }

    /// Changes only what the body names: `{"opt_out": {"words"?, "reply"?}, "retention": {"messages_days"?}}`.
    @Sendable func patch(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "changing settings needs an admin")
        let body = try await request.jsonObject(context: context)
        guard !body.isEmpty else { throw Problem(.badRequest, "name at least one setting to change") }
        var s = try await engine.settings(caller.tenant)
        for (section, value) in body.sorted(by: { $0.key < $1.key }) {
            guard case .map(let fields) = value, !fields.isEmpty else {
                throw Problem(.badRequest, "\(section.prefix(64)) must be an object naming what to change")
            }
            switch section {
            case "opt_out":
                for (field, v) in fields.sorted(by: { $0.key < $1.key }) {
                    switch field {
                    case "words":
                        guard case .list(let items) = v, items.allSatisfy({ if case .string = $0 { true } else { false } }) else {
                            throw Problem(.badRequest, "opt_out.words must be a list of words")
                        }
                        s.optOutWords = items.map(\.text)
                    case "reply":
                        switch v {
                        case .null: s.optOutReply = nil
                        case .string(let r): s.optOutReply = r
                        default: throw Problem(.badRequest, "opt_out.reply must be text, or null to send nothing")
                        }
                    default: throw Problem(.badRequest, "unknown field opt_out.\(field.prefix(64))")
                    }
                }
            case "retention":
                for (field, v) in fields {
                    guard field == "messages_days" else { throw Problem(.badRequest, "unknown field retention.\(field.prefix(64))") }
                    switch v {
                    case .null: s.messageRetentionDays = nil
                    case .number(let n) where n == n.rounded() && abs(n) < 1e9: s.messageRetentionDays = Int(n)
                    default: throw Problem(.badRequest, "retention.messages_days must be a whole number of days, or null")
                    }
                }
            default:
                throw Problem(.badRequest, "unknown setting \(section.prefix(64)): opt_out or retention")
            }
        }
        if let problem = s.problem { throw Problem(.badRequest, problem) }
        try await engine.saveSettings(s, tenant: caller.tenant)
        try await store.audit(context, caller, "settings.update", caller.tenant, at: engine.now)
        return json(Self.view(s))
    }
}
