import Crypto
import FlowEngine
import FlowRuntime
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird

/// A flow's inbound webhook: `POST /hooks/{token}` starts the flow for the contact the posted JSON names, with the
/// variables its `trigger.webhook` maps (docs/api.md, "Webhook triggers"). `/v1/flows/{name}/hook` makes, rotates,
/// shows and deletes it.
struct HookRoutes {
    let store: any HookRecords & FlowRecords & ContactRecords & TenantRecords
    let engine: Engine
    let secrets: SecretBox?
    let starts: StartRoutes

    static let signatureHeader = HTTPField.Name("X-Flowline-Signature")!

    func addRoutes(to v1: RouterGroup<FlowlineRequestContext>, public router: Router<FlowlineRequestContext>) {
        v1.get("flows/{name}/hook", use: show)
        v1.post("flows/{name}/hook", use: make)
        v1.delete("flows/{name}/hook", use: delete)
        router.post("hooks/{token}", use: receive)
    }

    static func view(_ h: FlowHook) -> [String: Value] {
        ["flow": .string(h.flow), "channel": .string(h.channel), "signed": .bool(h.sealedSigningSecret != nil),
         "created_at": .string(h.createdAt.iso8601)]
    }

    @Sendable func show(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let name = try BodyText.pathIdentifier(context, "name", max: 200)
        guard let h = try await store.hook(tenant: caller.tenant, flow: name) else { throw Problem(.notFound, "flow \(name) has no webhook") }
        return json(.map(Self.view(h)))
    }

    /// `{"channel", "signed"?}` → 201 with the token (shown once) and, when signed, the signing secret (shown once).
    /// Called again, it rotates: a new token, and the old one stops working.
    @Sendable func make(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "configuring a flow's webhook needs an admin")
        let name = try BodyText.pathIdentifier(context, "name", max: 200)
        let body = try await request.jsonObject(context: context)
        if let stray = body.keys.sorted().first(where: { !["channel", "signed"].contains($0) }) {
            throw Problem(.badRequest, "unknown field \(stray.prefix(64))")
        }
        let channelID = try BodyText.identifier(body, "channel", max: 64, what: "the id of the channel its contacts are reached on")
        var signed = false
        if let given = body["signed"] {
            guard case .bool(let b) = given else { throw Problem(.badRequest, "signed must be true or false") }
            signed = b
        }
        guard let channel = try await store.channel(id: channelID, tenant: caller.tenant) else { throw Problem(.notFound, "no channel \(channelID)") }
        guard let flow = try await store.publishedFlows(tenant: caller.tenant).first(where: { $0.name == name }) else {
            throw Problem(.notFound, "flow \(name) has no published version")
        }
        guard let program = try await store.program(hash: flow.programHash) else { throw Problem(.internalError, "the flow's program is missing") }
        guard program.metadata["webhook"] != .null else {
            throw Problem(.conflict, "flow \(name) declares no trigger.webhook: say where the contact's address is in the posted JSON",
                          extra: ["code": "no_webhook_trigger"])
        }
        if let kind = flow.triggerChannel, kind != channel.kind {
            throw Problem(.conflict, "flow \(name) runs on \(kind) channels; channel \(channelID) is \(channel.kind)", extra: ["code": "wrong_channel"])
        }
        let token = "fh_" + APIKeys.random(43)  // ~256 random bits, as an API key
        var hook = FlowHook(tenant: caller.tenant, flow: name, channel: channelID, sealedSigningSecret: nil, createdAt: engine.now)
        var answer = Self.view(hook)
        if signed {
            guard let secrets else { throw Problem(.unavailable, "this server has no FLOWLINE_SECRET_KEY, so it cannot keep a signing secret") }
            let secret = "fhs_" + APIKeys.random(43)
            hook.sealedSigningSecret = try secrets.seal(secret, context: hook.secretContext)
            answer["signing_secret"] = .string(secret)
            answer["signed"] = true
        }
        try await store.saveHook(hook, tokenHash: APIKeys.hash(token))
        try await store.audit(context, caller, "flow.hook", name, at: engine.now)
        answer["token"] = .string(token)
        answer["path"] = .string("/hooks/\(token)")
        return json(.map(answer), status: .created)
    }

    @Sendable func delete(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "configuring a flow's webhook needs an admin")
        let name = try BodyText.pathIdentifier(context, "name", max: 200)
        guard try await store.deleteHook(tenant: caller.tenant, flow: name) else { throw Problem(.notFound, "flow \(name) has no webhook") }
        try await store.audit(context, caller, "flow.hook.delete", name, at: engine.now)
        return Response(status: .noContent)
    }

    /// The value at a dotted path (`customer.phone`, `items.0.sku`) in `value`, or nil.
    static func lookup(_ value: Value, _ path: String) -> Value? {
        var here = value
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            switch here {
            case .map(let m): guard let next = m[String(part)] else { return nil }; here = next
            case .list(let l): guard let i = Int(part), l.indices.contains(i) else { return nil }; here = l[i]
            default: return nil
            }
        }
        return here == .null ? nil : here
    }

    /// The posted JSON, from anyone who has the token (and, for a signed hook, the secret): the flow is started for
    /// the contact at `trigger.webhook.address`, once per `Idempotency-Key`. The token is looked up by its SHA-256,
    /// so no comparison runs on the secret itself; the signature is compared in constant time on the raw bytes.
    @Sendable func receive(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let token = try context.parameters.require("token")
        let bytes = try await request.body.collect(upTo: context.maxUploadSize)
        guard token.utf8.count <= 128, let hook = try await store.hook(tokenHash: APIKeys.hash(token)) else {
            throw Problem(.notFound, "no such hook: its token was rotated, deleted or never valid")
        }
        if let sealed = hook.sealedSigningSecret {
            guard let secrets, let secret = try? secrets.open(sealed, context: hook.secretContext) else {
                throw Problem(.unavailable, "this hook's signing secret cannot be read with this server's FLOWLINE_SECRET_KEY")
            }
            let mac = HMAC<SHA256>.authenticationCode(for: Array(buffer: bytes), using: SymmetricKey(data: Data(secret.utf8)))
            let expected = "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
            let given = request.headers[Self.signatureHeader] ?? ""
            guard SecretBox.constantTimeEqual(Array(expected.utf8), Array(given.utf8)) else {
                throw Problem(.unauthorized, "X-Flowline-Signature is missing or does not match the body")
            }
        }
        guard let posted = Value(json: String(buffer: bytes)), case .map = posted else {
            throw Problem(.badRequest, "the body must be a JSON object")
        }
        guard let flow = try await store.publishedFlows(tenant: hook.tenant).first(where: { $0.name == hook.flow }),
              let program = try await store.program(hash: flow.programHash) else {
            throw Problem(.notFound, "flow \(hook.flow) has no published version")
        }
        let mapping = program.metadata["webhook"]
        guard case .string(let addressPath) = mapping["address"] else {
            throw Problem(.conflict, "the published flow \(hook.flow) declares no trigger.webhook", extra: ["code": "no_webhook_trigger"])
        }
        let address: String
        switch Self.lookup(posted, addressPath) {
        case .string(let s)?: address = try BodyText.identifier(s, addressPath, max: 128)
        case .number(let n)? where n == n.rounded() && abs(n) < 1e15: address = String(Int64(n))
        default: throw Problem(.badRequest, "the body has no text or whole number at \(addressPath) for the contact's address")
        }
        var variables: [String: Value] = [:]
        if case .map(let paths) = mapping["variables"] {
            for (name, path) in paths { if let v = Self.lookup(posted, path.text) { variables[name] = v } }
        }
        guard Value.map(variables).jsonText.utf8.count <= 64 * 1024 else { throw Problem(.badRequest, "the variables hold at most 64 KiB of JSON") }
        var contactName: String?
        if case .string(let namePath) = mapping["name"], case .string(let n)? = Self.lookup(posted, namePath), !n.isEmpty {
            contactName = String(n.prefix(200))
        }
        let key = try request.headers[HTTPField.Name("Idempotency-Key")!].map { "hook:" + (try BodyText.identifier($0, "Idempotency-Key", max: 255)) }
        let contact = try await store.contact(tenant: hook.tenant, channel: hook.channel, address: address)
        let started = try await starts.begin(tenant: hook.tenant, flow: hook.flow, channelID: hook.channel, address: address, contact: contact,
                                             variables: variables, at: nil, key: key, asked: .null, contactName: contactName)
        if started.new {
            context.logger.info("flow started by its webhook", metadata: ["flow": "\(hook.flow)", "conversation": "\(started.answer["conversation"].text)"])
        }
        return started.response
    }
}
