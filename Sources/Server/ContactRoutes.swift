import FlowCompiler
import FlowEngine
import FlowVM
import Hummingbird

/// `/v1/contacts`: the people a tenant talks to, one per channel and address, kept beyond their conversations.
/// Agents read them; supervisors and admins create and edit them; admins delete them.
struct ContactRoutes {
    let store: any ContactRecords & ConversationRecords & TenantRecords & FlowRecords
    let engine: Engine

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("contacts", use: list)
        group.post("contacts", use: create)
        group.get("contacts/csv", use: exportCSV)
        group.post("contacts/csv", use: importCSV)
        group.get("contacts/{id}", use: get)
        group.patch("contacts/{id}", use: update)
        group.delete("contacts/{id}", use: delete)
        group.get("contacts/{id}/data", use: data)
        group.post("contacts/{id}/erase", use: erase)
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
        return try filter { name in q.getAll(name).map { String($0) } }
    }

    /// The filter the named values make (each name's values, in order): the list's query parameters, or a saved
    /// segment's `filter` object, which uses the same names.
    static func filter(_ values: (String) throws -> [String]) throws -> ContactFilter {
        func single(_ name: String) throws -> String? {
            let all = try values(name)
            guard all.count <= 1 else { throw Problem(.badRequest, "\(name) is given once") }
            return all.first
        }
        var f = ContactFilter()
        for tag in try values("tag") {
            guard ContactAttributes.validTag(tag) else { throw Problem(.badRequest, "tag \"\(tag.prefix(80))\" is not a tag's shape") }
            f.tags.append(tag)
        }
        for text in try values("attribute") {
            _ = try BodyText.identifier(text, "attribute", max: 300)
            switch AttributeCondition.parse(text) {
            case .success(let c): f.attributes.append(c)
            case .failure(let p): throw Problem(.badRequest, p.message)
            }
        }
        guard f.tags.count <= 20, f.attributes.count <= 20 else { throw Problem(.badRequest, "a filter has at most 20 tags and 20 attribute conditions") }
        if let channel = try single("channel") { f.channel = try BodyText.identifier(channel, "channel", max: 64) }
        if let optedIn = try single("opted_in") {
            guard let b = ["true": true, "false": false][optedIn] else { throw Problem(.badRequest, "opted_in must be true or false") }
            f.optedIn = b
        }
        for (name, field) in [("seen_after", \ContactFilter.seenAfter), ("seen_before", \.seenBefore)] {
            guard let v = try single(name) else { continue }
            guard let t = DataDocument.timestamp(v) else { throw Problem(.badRequest, "\(name) must be an ISO 8601 time") }
            f[keyPath: field] = t
        }
        if let search = try single("q"), !search.isEmpty { f.search = try BodyText.identifier(search, "q", max: 200) }
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
        guard !body.isEmpty else { throw Problem(.badRequest, "name at least one field to change") }
        let fixed: Set = ["channel", "address", "phone"]
        if let key = body.keys.sorted().first(where: { !Self.knownFields.union(["add_tags", "remove_tags"]).contains($0) || fixed.contains($0) }) {
            throw Problem(.badRequest, fixed.contains(key) ? "a contact's \(key) does not change: create a contact for the new one" : "unknown field \(key.prefix(64))")
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

    // MARK: Privacy

    /// Everything held about one contact, as JSON (a data subject's access request): the record, and each of its
    /// conversations with its variables and messages.
    @Sendable func data(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "exporting a contact's data needs an admin")
        let contact = try await existing(context, caller)
        var conversations: [Value] = []
        var offset = 0
        while true {
            let (page, total) = try await store.conversations(
                tenant: caller.tenant, filter: ConversationFilter(contact: contact.address, channel: contact.channel), limit: 500, offset: offset)
            for c in page {
                var variables: [String: Value] = [:]
                if let continuation = c.continuation, let program = try await store.program(hash: c.programHash) {
                    for (slot, name) in program.variables.enumerated() where slot < continuation.variables.count && continuation.variables[slot] != .null {
                        variables[name] = continuation.variables[slot]
                    }
                }
                let messages = try await store.messages(conversation: c.id, tenant: caller.tenant).map { m -> Value in
                    ["direction": .string(m.direction.rawValue), "text": .string(m.text), "at": .string(m.at.iso8601)]
                }
                conversations.append(["id": .string(c.id), "flow": .string(c.flow), "status": .string(c.status.rawValue),
                                      "created_at": .string(c.createdAt.iso8601), "updated_at": .string(c.updatedAt.iso8601),
                                      "variables": .map(variables), "messages": .list(messages)])
            }
            offset += page.count
            if page.isEmpty || offset >= total { break }
        }
        try await store.audit(context, caller, "contact.export", contact.id, at: engine.now)
        return json(["contact": Self.view(contact), "conversations": .list(conversations), "exported_at": .string(engine.now.iso8601)])
    }

    /// Erases everything held about a contact; the audit log keeps that it was done, by whom, and the contact's id.
    @Sendable func erase(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "erasing a contact needs an admin")
        let id = try context.parameters.require("id")
        guard let erased = try await store.eraseContact(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no contact \(id)") }
        try await store.audit(context, caller, "contact.erase", id, at: engine.now)
        return json(["id": .string(id), "conversations": .number(Double(erased.conversations)), "messages": .number(Double(erased.messages))])
    }

    // MARK: CSV

    /// The columns a CSV of contacts has besides attributes; `id` is written on export and ignored on import.
    static let csvColumns = ["id", "address", "name", "phone", "tags", "consent_source", "consent_at", "opted_out"]
    static let attributeTypes = ["text", "number", "boolean", "date", "list"]

    /// `GET /v1/contacts/csv?…`: the contacts the list's filters select, as RFC 4180 CSV. Attribute columns are
    /// named `key:type` (`score:number`), a list's items separated by `;`, as import reads them.
    @Sendable func exportCSV(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let filter = try Self.filter(request)
        var contacts: [ContactRecord] = []
        while true {
            let (page, total) = try await store.contacts(tenant: caller.tenant, filter: filter, limit: 500, offset: contacts.count)
            contacts += page
            guard contacts.count < total, !page.isEmpty else { break }
            guard contacts.count < 1_000_000 else { throw Problem(.tooLarge, "export at most a million contacts at once: filter them") }
        }
        var types: [String: String] = [:]
        for c in contacts {
            for (key, value) in c.attributes {
                let t: String = switch value {
                case .number: "number"
                case .bool: "boolean"
                case .list: "list"
                case .string(let s): ContactAttributes.isDate(s) ? "date" : "text"
                default: "text"
                }
                types[key] = types[key].map { $0 == t ? t : ($0 == "list" || t == "list" ? "list" : "text") } ?? t
            }
        }
        let keys = types.keys.sorted()
        var out = CSV.record(Self.csvColumns + keys.map { types[$0] == "text" ? $0 : "\($0):\(types[$0]!)" })
        for c in contacts {
            var row = [c.id, c.address, c.name ?? "", c.phone ?? "", c.tags.joined(separator: ";"), c.consentSource ?? "",
                       c.consentAt?.iso8601 ?? "", c.optedOutAt == nil ? "false" : "true"]
            for key in keys {
                switch c.attributes[key] {
                case .list(let items)?: row.append(items.map(\.text).joined(separator: ";"))
                case let v?: row.append(v.text)
                case nil: row.append("")
                }
            }
            out += CSV.record(row)
        }
        return Response(status: .ok, headers: [.contentType: "text/csv; charset=utf-8",
                                               .contentDisposition: "attachment; filename=\"contacts.csv\""],
                        body: .init(byteBuffer: ByteBuffer(string: out)))
    }

    /// `POST /v1/contacts/csv?channel=ch_…` with a CSV body: creates the contacts it names and updates those the
    /// channel has (attributes merged, tags added). A row with any mistake is not imported at all; the answer lists
    /// each by line.
    @Sendable func importCSV(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "importing contacts needs a supervisor or an admin")
        guard let channelID = request.uri.queryParameters["channel"].map(String.init) else {
            throw Problem(.badRequest, "channel is required: ?channel= the id of the channel the contacts are reached on")
        }
        _ = try BodyText.identifier(channelID, "channel", max: 64)
        guard try await store.channel(id: channelID, tenant: caller.tenant) != nil else { throw Problem(.notFound, "no channel \(channelID)") }
        let text = try await request.text(context: context)
        guard !text.utf8.contains(0) else { throw Problem(.badRequest, "the CSV holds a NUL character") }
        let records: [(line: Int, fields: [String])]
        switch CSV.parse(text) {
        case .success(let r): records = r
        case .failure(let f): throw Problem(.badRequest, "the CSV cannot be read: line \(f.line): \(f.message)")
        }
        guard let header = records.first else { throw Problem(.badRequest, "the CSV is empty: its first line names the columns") }
        guard records.count <= 10_001 else { throw Problem(.tooLarge, "import at most 10,000 contacts at once") }
        // The header: known columns, and attributes as `key` or `key:type`.
        var attributeColumns: [Int: (key: String, type: String)] = [:]
        var columns: [String: Int] = [:]
        for (i, raw) in header.fields.enumerated() {
            let name = raw.trimmingCharacters(in: .whitespaces)
            guard columns[name] == nil else { throw Problem(.badRequest, "column \(name.prefix(64)) appears twice") }
            columns[name] = i
            if Self.csvColumns.contains(name) { continue }
            let parts = name.split(separator: ":", maxSplits: 1).map(String.init)
            guard let key = parts.first, ContactAttributes.validKey(key) else {
                throw Problem(.badRequest, "column \(name.prefix(64)) is neither one of \(Self.csvColumns.joined(separator: ", ")) nor an attribute name")
            }
            let type = parts.count == 2 ? parts[1] : "text"
            guard Self.attributeTypes.contains(type) else {
                throw Problem(.badRequest, "column \(name.prefix(64)): the type is one of \(Self.attributeTypes.joined(separator: ", "))")
            }
            attributeColumns[i] = (key, type)
        }
        guard let addressColumn = columns["address"] else { throw Problem(.badRequest, "the CSV needs an address column") }

        var created = 0, updated = 0
        var errors: [Value] = []
        var seen: [String: Int] = [:]
        let now = engine.now
        rows: for (line, fields) in records.dropFirst() {
            func fail(_ message: String) { errors.append(["line": .number(Double(line)), "message": .string(message)]) }
            guard fields.count == header.fields.count else {
                fail("\(fields.count) fields where the header has \(header.fields.count)")
                continue
            }
            func cell(_ name: String) -> String? {
                columns[name].map { CSV.unescaped(fields[$0]) }.flatMap { $0.isEmpty ? nil : $0 }
            }
            guard let address = cell("address"), (try? BodyText.identifier(address, "address", max: 128)) != nil else {
                fail("the address (column \(addressColumn + 1)) is missing or not 1 to 128 characters without control characters")
                continue
            }
            if let first = seen[address] {
                fail("address \(address.prefix(64)) is on line \(first) too")
                continue
            }
            seen[address] = line
            if let phone = cell("phone"), (try? BodyText.identifier(phone, "phone", max: 32)) == nil {
                fail("the phone is 1 to 32 characters without control characters")
                continue
            }
            var body: [String: Value] = [:]
            if let name = cell("name") { body["name"] = .string(name) }
            if let tags = cell("tags") {
                body["add_tags"] = .list(tags.split(separator: ";").map { .string($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 != "" })
            }
            if let source = cell("consent_source") {
                var consent: [String: Value] = ["source": .string(source)]
                if let at = cell("consent_at") { consent["at"] = .string(at) }
                body["consent"] = .map(consent)
            }
            if let out = cell("opted_out") {
                guard let b = ["true": true, "false": false, "yes": true, "no": false][out.lowercased()] else {
                    fail("opted_out is true or false, not \(out.prefix(20))")
                    continue
                }
                body["opted_out"] = .bool(b)
            }
            var attributes: [String: Value] = [:]
            for (i, (key, type)) in attributeColumns.sorted(by: { $0.key < $1.key }) {
                let raw = CSV.unescaped(fields[i])
                guard !raw.isEmpty else { continue }
                switch type {
                case "number":
                    guard let n = Double(raw.trimmingCharacters(in: .whitespaces)), n.isFinite else {
                        fail("\(key) is a number, not \(raw.prefix(40))")
                        continue rows
                    }
                    attributes[key] = .number(n)
                case "boolean":
                    guard let b = ["true": true, "false": false, "yes": true, "no": false][raw.lowercased()] else {
                        fail("\(key) is true or false, not \(raw.prefix(40))")
                        continue rows
                    }
                    attributes[key] = .bool(b)
                case "date":
                    guard ContactAttributes.isDate(raw) else {
                        fail("\(key) is a date (YYYY-MM-DD), not \(raw.prefix(40))")
                        continue rows
                    }
                    attributes[key] = .string(raw)
                case "list":
                    attributes[key] = .list(raw.split(separator: ";").map { .string($0.trimmingCharacters(in: .whitespaces)) })
                default:
                    attributes[key] = .string(raw)
                }
            }
            if !attributes.isEmpty { body["attributes"] = .map(attributes) }
            do {
                if let old = try await store.contact(tenant: caller.tenant, channel: channelID, address: address) {
                    var contact = old
                    try Self.apply(body, to: &contact, now: now)
                    contact.updatedAt = now
                    guard try await store.updateContact(contact, over: old) else {
                        fail("the contact changed while it was imported; import the line again")
                        continue
                    }
                    updated += 1
                } else {
                    var contact = ContactRecord(id: ContactRecord.newID(), tenant: caller.tenant, channel: channelID, address: address,
                                                phone: cell("phone"), createdAt: now)
                    try Self.apply(body, to: &contact, now: now)
                    guard try await store.insertContact(contact) else {
                        fail("another request made a contact at this address meanwhile; import the line again")
                        continue
                    }
                    created += 1
                }
            } catch let p as Problem {
                fail(p.detail)
            }
        }
        try await store.audit(context, caller, "contact.import", channelID, at: now)
        return json(["created": .number(Double(created)), "updated": .number(Double(updated)),
                     "failed": .number(Double(errors.count)), "errors": .list(Array(errors.prefix(1000)))])
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
            // The shape and count of what was given (the count with what is kept is checked below, as a conflict).
            if let p = ContactAttributes.check(attributes: [:], tags: tags) { throw Problem(.badRequest, p.message) }
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
