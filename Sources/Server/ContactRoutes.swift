import FlowCompiler
import FlowEngine
import FlowVM
import Hummingbird

/// `/v1/contacts`: the people a tenant talks to, one per channel and address, kept beyond their conversations.
/// Agents read them; supervisors and admins create and edit them; admins delete them.
struct ContactRoutes {
    let store: any ContactRecords & ConversationRecords & TenantRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("contacts", use: list)
        group.post("contacts", use: create)
        group.get("contacts/{id}", use: get)
        group.patch("contacts/{id}", use: update)
        group.delete("contacts/{id}", use: delete)
    }

    static let knownFields: Set<String> = ["channel", "address", "name", "phone", "attributes", "tags", "consent", "opted_out"]

    /// A contact as the API shows it.
    static func view(_ c: ContactRecord) -> Value {
        [
            "id": .string(c.id), "channel": .string(c.channel), "address": .string(c.address),
            "name": c.name.map(Value.string) ?? .null, "phone": c.phone.map(Value.string) ?? .null,
            "attributes": .map(c.attributes), "tags": .list(c.tags.map(Value.string)),
            "consent": c.consentAt.map { at in ["at": .string(at.iso8601), "source": c.consentSource.map(Value.string) ?? .null] } ?? .null,
            "opted_out_at": c.optedOutAt.map { .string($0.iso8601) } ?? .null, "opted_in": .bool(c.optedIn),
            "created_at": .string(c.createdAt.iso8601), "updated_at": .string(c.updatedAt.iso8601),
            "last_seen_at": c.lastSeenAt.map { .string($0.iso8601) } ?? .null,
        ]
    }

    /// `?tag=&attribute=key:op:value&channel=&opted_in=&seen_after=&seen_before=&q=`, each condition holding; `tag` and
    /// `attribute` may repeat.
    static func filter(_ request: Request) throws -> ContactFilter {
        let q = request.uri.queryParameters
        var f = ContactFilter()
        for tag in q.getAll("tag") {
            guard ContactAttributes.validTag(tag) else { throw Problem(.badRequest, "tag \"\(tag.prefix(80))\" is not a tag's shape") }
            f.tags.append(tag)
        }
        for text in q.getAll("attribute") {
            _ = try BodyText.identifier(text, "attribute", max: 300)
            switch AttributeCondition.parse(text) {
            case .success(let c): f.attributes.append(c)
            case .failure(let p): throw Problem(.badRequest, p.message)
            }
        }
        guard f.tags.count + f.attributes.count <= 20 else { throw Problem(.badRequest, "a filter has at most 20 tag and attribute conditions") }
        if let channel = q["channel"].map(String.init) { f.channel = try BodyText.identifier(channel, "channel", max: 64) }
        if let optedIn = q["opted_in"].map(String.init) {
            guard let b = ["true": true, "false": false][optedIn] else { throw Problem(.badRequest, "opted_in must be true or false") }
            f.optedIn = b
        }
        f.seenAfter = try request.queryTime("seen_after")
        f.seenBefore = try request.queryTime("seen_before")
        if let search = q["q"].map(String.init), !search.isEmpty { f.search = try BodyText.identifier(search, "q", max: 200) }
        return f
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let page = try Page(request)
        let (items, total) = try await store.contacts(tenant: caller.tenant, filter: try Self.filter(request), limit: page.limit, offset: page.offset)
        return page.response("contacts", items.map(Self.view), total: total)
    }

    private func existing(_ context: FlowlineRequestContext, _ caller: Caller) async throws -> ContactRecord {
        let id = try context.parameters.require("id")
        guard let contact = try await store.contact(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no contact \(id)") }
        return contact
    }

    /// The contact and its latest conversations (up to 20, newest first; `GET /v1/conversations?contact=` pages them all).
    @Sendable func get(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let contact = try await existing(context, caller)
        let (conversations, total) = try await store.conversations(
            tenant: caller.tenant, filter: ConversationFilter(contact: contact.address, channel: contact.channel), limit: 20, offset: 0)
        guard case .map(var m) = Self.view(contact) else { return json(Self.view(contact)) }
        m["conversations"] = .list(conversations.map { c in
            ["id": .string(c.id), "flow": .string(c.flow), "status": .string(c.status.rawValue), "created_at": .string(c.createdAt.iso8601)]
        })
        m["conversations_total"] = .number(Double(total))
        return json(.map(m))
    }

    @Sendable func create(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "creating contacts needs a supervisor or an admin")
        let body = try await request.jsonObject(context: context)
        try Self.refuseUnknown(body)
        let channelID = try BodyText.identifier(body, "channel", max: 64, what: "the id of the channel the contact is reached on")
        guard try await store.channel(id: channelID, tenant: caller.tenant) != nil else {
            throw Problem(.notFound, "no channel \(channelID)")
        }
        let address = try BodyText.identifier(body, "address", max: 128, what: "the address the channel knows the contact by")
        let now = engine.now
        var contact = ContactRecord(id: ContactRecord.newID(), tenant: caller.tenant, channel: channelID, address: address,
                                    phone: try BodyText.optionalIdentifier(body, "phone", max: 32), createdAt: now)
        try Self.apply(body, to: &contact, now: now)
        guard try await store.insertContact(contact) else {
            let id = try await store.contact(tenant: caller.tenant, channel: channelID, address: address)?.id ?? ""
            throw Problem(.conflict, "channel \(channelID) already has a contact at that address: \(id)")
        }
        try await store.audit(context, caller, "contact.create", contact.id, at: now)
        return json(Self.view(contact), status: .created)
    }

    /// Changes only the fields named: `attributes` merges (a null value removes the attribute), `tags` replaces,
    /// `add_tags` and `remove_tags` edit; `consent` (or null), `opted_out`, `name`.
    @Sendable func update(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "editing contacts needs a supervisor or an admin")
        let body = try await request.jsonObject(context: context)
        for key in body.keys.sorted() where !(Self.knownFields.subtracting(["channel", "address", "phone"]).union(["add_tags", "remove_tags"])).contains(key) {
            throw Problem(.badRequest, ["channel", "address", "phone"].contains(key)
                              ? "a contact's \(key) does not change: create a contact for the new one" : "unknown field \(key.prefix(64))")
        }
        let old = try await existing(context, caller)
        var contact = old
        let now = engine.now
        try Self.apply(body, to: &contact, now: now)
        contact.updatedAt = now
        guard try await store.updateContact(contact, over: old) else {
            throw Problem(.conflict, "the contact changed while this edit was made; read it again and retry")
        }
        try await store.audit(context, caller, "contact.update", contact.id, at: now)
        contact.revision += 1
        return json(Self.view(contact))
    }

    @Sendable func delete(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "deleting contacts needs an admin")
        let id = try context.parameters.require("id")
        guard try await store.deleteContact(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no contact \(id)") }
        try await store.audit(context, caller, "contact.delete", id, at: engine.now)
        return Response(status: .noContent)
    }

    static func refuseUnknown(_ body: [String: Value]) throws {
        if let key = body.keys.sorted().first(where: { !knownFields.contains($0) }) { throw Problem(.badRequest, "unknown field \(key.prefix(64))") }
    }

    /// The editable fields of `body` applied to `contact`, each checked.
    static func apply(_ body: [String: Value], to contact: inout ContactRecord, now: Timestamp) throws {
        if let name = body["name"] {
            contact.name = name == .null ? nil : try BodyText.optionalIdentifier(body, "name", max: 256)
        }
        if let value = body["attributes"] {
            guard case .map(let given) = value else { throw Problem(.badRequest, "attributes must be an object of name to value") }
            guard given.count <= ContactAttributes.maxAttributes else {
                throw Problem(.badRequest, "attributes names at most \(ContactAttributes.maxAttributes) attributes")
            }
            for (key, v) in given.sorted(by: { $0.key < $1.key }) {
                if v == .null {
                    contact.attributes[key] = nil
                } else {
                    if let p = ContactAttributes.check(key, v) { throw Problem(.badRequest, p.message) }
                    contact.attributes[key] = v
                }
            }
        }
        func tagList(_ key: String) throws -> [String]? {
            guard let value = body[key] else { return nil }
            guard case .list(let items) = value, items.allSatisfy({ if case .string = $0 { true } else { false } }) else {
                throw Problem(.badRequest, "\(key) must be a list of tags")
            }
            let tags = items.map(\.text)
            if let bad = tags.first(where: { !ContactAttributes.validTag($0) }) {
                throw Problem(.badRequest, "tag \"\(bad.prefix(80))\" must be 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter or digit")
            }
            guard tags.count <= ContactAttributes.maxTags else { throw Problem(.badRequest, "\(key) names at most \(ContactAttributes.maxTags) tags") }
            return tags
        }
        if let tags = try tagList("tags") { contact.tags = tags }
        if let add = try tagList("add_tags") { contact.tags += add.filter { !contact.tags.contains($0) } }
        if let remove = try tagList("remove_tags") { contact.tags.removeAll { remove.contains($0) } }
        var seen = Set<String>()
        contact.tags = contact.tags.filter { seen.insert($0).inserted }
        // Each value was checked as it came; what remains is the count, which an edit can exceed with what is kept.
        if let p = ContactAttributes.check(attributes: contact.attributes, tags: contact.tags) { throw Problem(.conflict, p.message) }
        if let consent = body["consent"] {
            switch consent {
            case .null:
                contact.consentAt = nil
                contact.consentSource = nil
            case .map(let m):
                if let key = m.keys.sorted().first(where: { !["at", "source"].contains($0) }) {
                    throw Problem(.badRequest, "unknown consent field \(key.prefix(64))")
                }
                contact.consentSource = try BodyText.identifier(m, "source", max: 200, what: "how the contact gave consent (a form, a reply, a call)")
                if let at = m["at"] {
                    guard case .string(let text) = at, let t = DataDocument.timestamp(text) else {
                        throw Problem(.badRequest, "consent.at must be an ISO 8601 time")
                    }
                    contact.consentAt = t
                } else {
                    contact.consentAt = now
                }
            default:
                throw Problem(.badRequest, "consent must be {\"source\", \"at\"?} or null")
            }
        }
        if let optedOut = body["opted_out"] {
            guard case .bool(let out) = optedOut else { throw Problem(.badRequest, "opted_out must be true or false") }
            if out { contact.optedOutAt = contact.optedOutAt ?? now } else { contact.optedOutAt = nil }
        }
    }
}
