import Crypto
import FlowCompiler
import FlowEngine
import FlowRuntime
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird

/// `POST /v1/flows/{name}/start`: a conversation the business starts (a reminder, a notification from a CRM), on the
/// flow's published version, for a contact named by id or by channel and address, once per `Idempotency-Key`.
struct StartRoutes {
    let store: any FlowRecords & ContactRecords & TenantRecords
    let engine: Engine
    let channels: Channels

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.post("flows/{name}/start", use: start)
        group.post("events/{name}", use: event)
    }

    /// `{"contact": {"id"} | {"channel", "address"}, "variables"?: {...}}` → 201 `{conversation, contact, flow, version}`.
    @Sendable func start(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "starting conversations needs a supervisor or an admin")
        let name = try BodyText.pathIdentifier(context, "name", max: 200)
        let key = try request.headers[HTTPField.Name("Idempotency-Key")!].map { try BodyText.identifier($0, "Idempotency-Key", max: 255) }
        let body = try await request.jsonObject(context: context)
        if let stray = body.keys.sorted().first(where: { !["contact", "variables", "at"].contains($0) }) {
            throw Problem(.badRequest, "unknown field \(stray.prefix(64))")
        }
        guard case .map(let who)? = body["contact"] else {
            throw Problem(.badRequest, "contact is required: {\"id\"} or {\"channel\", \"address\"}")
        }
        let variables = try Self.variables(body)
        // Later: the conversation is stored scheduled and starts then; a time already past starts it now.
        let now = engine.now
        let at = try Self.at(body).flatMap { $0 > now ? $0 : nil }

        let (channelID, address, contact) = try await Self.contact(who, tenant: caller.tenant, store: store)
        let started = try await begin(tenant: caller.tenant, flow: name, channelID: channelID, address: address, contact: contact,
                                      variables: variables, at: at, key: key, asked: body["at"] ?? .null)
        if started.new { try await store.audit(context, caller, "flow.start", started.answer["conversation"].text, at: engine.now) }
        return started.response
    }

    /// The contact a start names: a record by id, or a channel and address (a record is made when there is none).
    static func contact(_ who: [String: Value], tenant: String, store: any ContactRecords)
        async throws -> (channel: String, address: String, record: ContactRecord?) {
        if who.keys.contains("id") {
            guard who.count == 1 else { throw Problem(.badRequest, "contact is {\"id\"} or {\"channel\", \"address\"}, not both") }
            let id = try BodyText.identifier(who, "id", max: 64)
            guard let found = try await store.contact(id: id, tenant: tenant) else { throw Problem(.notFound, "no contact \(id)") }
            return (found.channel, found.address, found)
        }
        if let stray = who.keys.sorted().first(where: { !["channel", "address"].contains($0) }) {
            throw Problem(.badRequest, "unknown contact field \(stray.prefix(64))")
        }
        let channelID = try BodyText.identifier(who, "channel", max: 64, what: "the id of the channel to reach the contact on")
        let address = try BodyText.identifier(who, "address", max: 128, what: "the address the channel knows the contact by")
        return (channelID, address, try await store.contact(tenant: tenant, channel: channelID, address: address))
    }

    /// `POST /v1/events/{name}` with `{"key"?, "contact"?, "data"?}`: a named event from outside (a CRM, a shop, a
    /// script). With a `key`, the conversation waiting on `wait_for` that event and key gets it (202 `{resumed:
    /// true}`); otherwise, or when none waits, the published flow whose `trigger.event` names it (the first by name)
    /// starts for the contact, with the variables its paths fill from `data`, exactly as `/start` would.
    @Sendable func event(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "posting events needs a supervisor or an admin")
        let name = try context.parameters.require("name")
        guard name.utf8.count <= 100, name.range(of: #"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"#, options: .regularExpression) != nil else {
            throw Problem(.badRequest, "an event's name is names joined by dots (order.paid), at most 100 characters")
        }
        let idempotency = try request.headers[HTTPField.Name("Idempotency-Key")!].map { "event:" + (try BodyText.identifier($0, "Idempotency-Key", max: 255)) }
        let body = try await request.jsonObject(context: context)
        if let stray = body.keys.sorted().first(where: { !["key", "contact", "data"].contains($0) }) {
            throw Problem(.badRequest, "unknown field \(stray.prefix(64))")
        }
        let data = body["data"] ?? .map([:])
        guard case .map = data else { throw Problem(.badRequest, "data must be a JSON object") }
        guard data.jsonText.utf8.count <= 64 * 1024 else { throw Problem(.badRequest, "data holds at most 64 KiB of JSON") }
        if body["key"] != nil {
            let key = try BodyText.identifier(body, "key", max: 200, what: "the key the waiting conversation waits on")
            if try await engine.deliverEvent(tenant: caller.tenant, name: name, key: key, payload: data, providerID: idempotency) {
                return json(["resumed": true], status: .accepted)
            }
        }
        // No conversation waits for it: a flow it starts, if any.
        var starting: (PublishedFlow, Program)?
        for flow in try await store.publishedFlows(tenant: caller.tenant) where !flow.catchAll {
            if let program = try await store.program(hash: flow.programHash), program.metadata["event"]["name"] == .string(name) {
                starting = (flow, program)
                break
            }
        }
        guard let (flow, program) = starting else {
            throw Problem(.notFound, "no conversation waits for event \(name)\(body["key"] == nil ? "" : " with that key") and no published flow "
                + "starts on it", extra: ["code": "no_listener"])
        }
        guard case .map(let who)? = body["contact"] else {
            throw Problem(.badRequest, "contact is required to start flow \(flow.name): {\"id\"} or {\"channel\", \"address\"}")
        }
        let (channelID, address, contact) = try await Self.contact(who, tenant: caller.tenant, store: store)
        var variables: [String: Value] = [:]
        if case .map(let paths) = program.metadata["event"]["variables"] {
            for (variable, path) in paths { if let v = HookRoutes.lookup(data, path.text) { variables[variable] = v } }
        }
        let started = try await begin(tenant: caller.tenant, flow: flow.name, channelID: channelID, address: address, contact: contact,
                                      variables: variables, at: nil, key: idempotency, asked: ["event": .string(name)])
        if started.new { try await store.audit(context, caller, "flow.start", started.answer["conversation"].text, at: engine.now) }
        return started.response
    }

    /// What a start does once its request is read (`POST /v1/flows/{name}/start`, a flow's webhook): checks the flow,
    /// the channel and the window, and starts the conversation once per `key`. `asked` is the `at` as given, part of
    /// what a key's reuse is compared on. The response is 201 (202 for later), or the first answer again for a key
    /// seen before; `new` says whether a conversation was made.
    func begin(tenant: String, flow name: String, channelID: String, address: String, contact: ContactRecord?, variables: [String: Value],
               at: Timestamp?, key: String?, asked: Value, contactName: String? = nil) async throws -> (response: Response, answer: Value, new: Bool) {
        let now = engine.now
        guard let channel = try await store.channel(id: channelID, tenant: tenant) else { throw Problem(.notFound, "no channel \(channelID)") }

        guard let flow = try await store.publishedFlows(tenant: tenant).first(where: { $0.name == name }) else {
            throw Problem(.notFound, "flow \(name) has no published version")
        }
        if let kind = flow.triggerChannel, kind != channel.kind {
            throw Problem(.conflict, "flow \(name) runs on \(kind) channels; channel \(channelID) is \(channel.kind)", extra: ["code": "wrong_channel"])
        }
        guard let program = try await store.program(hash: flow.programHash) else { throw Problem(.internalError, "the flow's program is missing") }
        try Self.check(variables, of: program, flow: name)
        // A channel with a reply window (WhatsApp: 24 hours from the contact's last message) takes only a template
        // once it has closed: the flow must name one to open with.
        if let window = channels[channel.kind]?.replyWindow, program.metadata["whatsapp_template"] == .null,
           program.metadata["opens_with_template"] != true,
           (contact?.lastSeenAt).map({ $0.adding(seconds: window) <= at ?? now }) ?? true {
            throw Problem(.conflict, "the contact has not written in the last \(window / 3600) hours, so \(channel.kind) takes only an approved "
                + "template: give flow \(name) a whatsapp_template to open with", extra: ["code": "template_required"])
        }

        let digest = SHA256.hash(data: Data(Value.map(["flow": .string(name), "channel": .string(channelID), "address": .string(address),
                                                        "variables": .map(variables), "at": asked]).jsonText.utf8))
            .map { String(format: "%02x", $0) }.joined()
        let conversationID = UUID().uuidString.lowercased(), contactID = contact?.id ?? ContactRecord.newID()
        var answer: Value = ["conversation": .string(conversationID), "contact": .string(contactID), "flow": .string(name),
                             "version": .number(Double(flow.version))]
        if let at, case .map(var m) = answer {
            m["scheduled_at"] = .string(at.iso8601)
            answer = .map(m)
        }
        var start = ConversationStart(
            tenant: tenant, channel: channelID, channelKind: channel.kind, contact: address, flow: flow, variables: variables,
            idempotencyKey: key, requestDigest: digest, newConversationID: conversationID, newContactID: contactID, answer: answer, at: at)
        start.contactName = contactName
        let outcome = try await engine.start(start)
        switch outcome {
        case .started:
            return (json(answer, status: at == nil ? .created : .accepted), answer, true)
        case .repeated(let first):
            var response = json(first, status: first["scheduled_at"] == .null ? .created : .accepted)
            response.headers[HTTPField.Name("Idempotent-Replayed")!] = "true"
            return (response, first, false)
        case .busy(let conversation):
            throw Problem(.conflict, "the contact is in conversation \(conversation) on this channel",
                          extra: ["code": "in_conversation", "conversation": .string(conversation)])
        case .optedOut:
            throw Problem(.conflict, "the contact opted out on this channel", extra: ["code": "opted_out"])
        case .notQueued:
            throw Problem(.internalError, "a start outside a campaign was taken for a campaign's")
        case .keyReused:
            throw Problem(.conflict, "this Idempotency-Key was used for a different start", extra: ["code": "idempotency_key_reused"])
        }
    }

    /// The `variables` a start or a campaign gives: an object of name to value, at most 64 KiB of JSON.
    static func variables(_ body: [String: Value]) throws -> [String: Value] {
        guard let given = body["variables"] else { return [:] }
        guard case .map(let v) = given else { throw Problem(.badRequest, "variables must be an object of name to value") }
        guard given.jsonText.utf8.count <= 64 * 1024 else { throw Problem(.badRequest, "variables hold at most 64 KiB of JSON") }
        return v
    }

    /// The `at` a start or a campaign gives, read as RFC 3339 exactly.
    static func at(_ body: [String: Value]) throws -> Timestamp? {
        guard let given = body["at"] else { return nil }
        guard case .string(let text) = given, let t = DataDocument.timestamp(text) else {
            throw Problem(.badRequest, "at must be an ISO 8601 time (2026-12-24T09:00:00-03:00)")
        }
        return t
    }

    /// Refuses a variable the flow does not declare (or a built-in one) to start with.
    static func check(_ variables: [String: Value], of program: Program, flow name: String) throws {
        if let stray = variables.keys.sorted().first(where: { !program.variables.contains($0) || Program.builtinVariables.contains($0) }) {
            throw Problem(.badRequest, "flow \(name) has no variable \(stray.prefix(64)) to start with")
        }
    }
}
