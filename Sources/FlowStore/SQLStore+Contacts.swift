import FlowEngine
import FlowVM

/// Contacts as records (schema v12): the row in `contacts` holds the attributes and tags as JSON, for reading; the
/// rows in `contact_attributes` and `contact_tags`, written in the same transaction, are what filters search.
extension SQLStore: ContactRecords {
    static let contactColumns = """
        id, tenant_id, channel, address, name, phone, attributes, tags, consent_at, consent_source, opted_out_at,
        created_at, updated_at, last_seen_at, revision
        """

    func contactRecord(_ r: SQLRow) -> ContactRecord {
        var c = ContactRecord(id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "",
                              address: r.text("address") ?? "", name: r.text("name"), phone: r.text("phone"),
                              attributes: Self.jsonMap(r.text("attributes")), tags: Self.jsonTexts(r.text("tags")),
                              createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0))
        c.updatedAt = Timestamp(milliseconds: r.int("updated_at") ?? r.int("created_at") ?? 0)
        c.consentAt = r.int("consent_at").map(Timestamp.init(milliseconds:))
        c.consentSource = r.text("consent_source")
        c.optedOutAt = r.int("opted_out_at").map(Timestamp.init(milliseconds:))
        c.lastSeenAt = r.int("last_seen_at").map(Timestamp.init(milliseconds:))
        c.revision = r.int("revision") ?? 0
        return c
    }

    static func jsonMap(_ text: String?) -> [String: Value] {
        if case .map(let m)? = text.flatMap(Value.init(json:)) { return m }
        return [:]
    }

    static func jsonTexts(_ text: String?) -> [String] {
        guard case .list(let l)? = text.flatMap(Value.init(json:)) else { return [] }
        return l.compactMap { if case .string(let s) = $0 { s } else { nil } }
    }

    /// The WHERE clause (over `contacts c`) and its binds for a filter; `$1` is the tenant.
    static func contactConditions(tenant: String, _ f: ContactFilter) -> (String, [SQLValue]) {
        var conditions = ["c.tenant_id = $1"]
        var binds: [SQLValue] = [.text(tenant)]
        func bind(_ v: SQLValue) -> String {
            binds.append(v)
            return "$\(binds.count)"
        }
        if let channel = f.channel { conditions.append("c.channel = \(bind(.text(channel)))") }
        if !f.addresses.isEmpty { conditions.append("c.address IN (\(f.addresses.map { bind(.text($0)) }.joined(separator: ", ")))") }
        for tag in f.tags {
            conditions.append("c.id IN (SELECT contact_id FROM contact_tags WHERE tenant_id = $1 AND tag = \(bind(.text(tag))))")
        }
        for a in f.attributes {
            let values = "SELECT contact_id FROM contact_attributes WHERE tenant_id = $1 AND key = \(bind(.text(a.key)))"
            let number = a.value.flatMap(Double.init).flatMap { $0.isFinite ? $0 : nil }
            let compared: String
            switch a.op {
            case .exists:
                conditions.append("c.id IN (\(values))")
                continue
            case .eq, .ne:
                let text = bind(.text(a.value ?? ""))
                compared = number.map { "(number_value = CAST(\(bind(.text(String($0)))) AS DOUBLE PRECISION) OR text_value = \(text))" }
                    ?? "text_value = \(text)"
            case .contains:
                compared = "LOWER(text_value) LIKE \(bind(.text("%" + Self.likeEscaped((a.value ?? "").lowercased()) + "%"))) ESCAPE '\\'"
            case .lt, .lte, .gt, .gte:
                let op = [AttributeCondition.Operator.lt: "<", .lte: "<=", .gt: ">", .gte: ">="][a.op]!
                compared = number.map { "number_value \(op) CAST(\(bind(.text(String($0)))) AS DOUBLE PRECISION)" }
                    ?? "text_value \(op) \(bind(.text(a.value ?? "")))"
            }
            conditions.append(a.op == .ne ? "c.id NOT IN (\(values) AND \(compared))" : "c.id IN (\(values) AND \(compared))")
        }
        if let optedIn = f.optedIn {
            conditions.append(optedIn ? "(c.consent_at IS NOT NULL AND c.opted_out_at IS NULL)"
                                      : "(c.consent_at IS NULL OR c.opted_out_at IS NOT NULL)")
        }
        if let t = f.seenAfter { conditions.append("c.last_seen_at >= \(bind(.int(t.milliseconds)))") }
        if let t = f.seenBefore { conditions.append("c.last_seen_at < \(bind(.int(t.milliseconds)))") }
        if let q = f.search {
            let pattern = bind(.text("%" + Self.likeEscaped(q.lowercased()) + "%"))
            conditions.append("(LOWER(COALESCE(c.name, '')) LIKE \(pattern) ESCAPE '\\' OR LOWER(c.address) LIKE \(pattern) ESCAPE '\\'"
                + " OR LOWER(COALESCE(c.phone, '')) LIKE \(pattern) ESCAPE '\\')")
        }
        return (conditions.joined(separator: " AND "), binds)
    }

    /// `s` with LIKE's wildcards and its escape character taken literally.
    static func likeEscaped(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
    }

    public func contacts(tenant: String, filter: ContactFilter, limit: Int, offset: Int) async throws -> (items: [ContactRecord], total: Int) {
        let (condition, binds) = Self.contactConditions(tenant: tenant, filter)
        return try await driver.transaction { db in
            let total = Int(try await db.query("SELECT COUNT(*) AS n FROM contacts c WHERE \(condition)", binds).first?.int("n") ?? 0)
            let rows = try await db.query(
                "SELECT \(Self.contactColumns) FROM contacts c WHERE \(condition) ORDER BY c.created_at, c.id LIMIT $\(binds.count + 1) OFFSET $\(binds.count + 2)",
                binds + [.int(Int64(limit)), .int(Int64(offset))])
            return (rows.map(self.contactRecord), total)
        }
    }

    public func contact(id: String, tenant: String) async throws -> ContactRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT \(Self.contactColumns) FROM contacts WHERE id = $1 AND tenant_id = $2", .text(id), .text(tenant))
                .first.map(self.contactRecord)
        }
    }

    public func contact(tenant: String, channel: String, address: String) async throws -> ContactRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT \(Self.contactColumns) FROM contacts WHERE tenant_id = $1 AND channel = $2 AND address = $3",
                                 .text(tenant), .text(channel), .text(address)).first.map(self.contactRecord)
        }
    }

    public func insertContact(_ c: ContactRecord) async throws -> Bool {
        try await driver.transaction { db in
            let inserted = try await db.execute(
                """
                INSERT INTO contacts (id, tenant_id, channel, address, name, phone, attributes, tags, consent_at, consent_source,
                  opted_out_at, created_at, updated_at, last_seen_at, revision)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0)
                ON CONFLICT (tenant_id, channel, address) DO NOTHING RETURNING id
                """, .text(c.id), .text(c.tenant), .text(c.channel), .text(c.address), c.name.map(SQLValue.text) ?? .null,
                c.phone.map(SQLValue.text) ?? .null, .text(Value.map(c.attributes).jsonText), .text(Value.list(c.tags.map(Value.string)).jsonText),
                c.consentAt.map { .int($0.milliseconds) } ?? .null, c.consentSource.map(SQLValue.text) ?? .null,
                c.optedOutAt.map { .int($0.milliseconds) } ?? .null, .int(c.createdAt.milliseconds), .int(c.updatedAt.milliseconds),
                c.lastSeenAt.map { .int($0.milliseconds) } ?? .null)
            guard !inserted.isEmpty else { return false }
            try await self.writeContactIndex(c, db)
            return true
        }
    }

    public func updateContact(_ c: ContactRecord, over old: ContactRecord) async throws -> Bool {
        try await driver.transaction { db in
            let updated = try await db.execute(
                """
                UPDATE contacts SET name = $3, attributes = $4, tags = $5, consent_at = $6, consent_source = $7, opted_out_at = $8,
                  updated_at = $9, revision = revision + 1 WHERE id = $1 AND tenant_id = $2 AND revision = $10 RETURNING id
                """, .text(c.id), .text(c.tenant), c.name.map(SQLValue.text) ?? .null, .text(Value.map(c.attributes).jsonText),
                .text(Value.list(c.tags.map(Value.string)).jsonText), c.consentAt.map { .int($0.milliseconds) } ?? .null,
                c.consentSource.map(SQLValue.text) ?? .null, c.optedOutAt.map { .int($0.milliseconds) } ?? .null,
                .int(c.updatedAt.milliseconds), .int(old.revision))
            guard !updated.isEmpty else { return false }
            try await db.execute("DELETE FROM contact_tags WHERE contact_id = $1", .text(c.id))
            try await db.execute("DELETE FROM contact_attributes WHERE contact_id = $1", .text(c.id))
            try await self.writeContactIndex(c, db)
            return true
        }
    }

    public func deleteContact(id: String, tenant: String) async throws -> Bool {
        try await driver.transaction { db in
            let deleted = try await db.execute("DELETE FROM contacts WHERE id = $1 AND tenant_id = $2 RETURNING id", .text(id), .text(tenant))
            guard !deleted.isEmpty else { return false }
            try await db.execute("DELETE FROM contact_tags WHERE contact_id = $1", .text(id))
            try await db.execute("DELETE FROM contact_attributes WHERE contact_id = $1", .text(id))
            return true
        }
    }

    public func eraseContact(id: String, tenant: String) async throws -> (conversations: Int, messages: Int)? {
        try await driver.transaction { db in
            // Conversations are locked before the contact, as every writer takes them (a contact's channel and
            // address never change, so reading them first without a lock is safe).
            guard let row = try await db.execute("SELECT channel, address FROM contacts WHERE id = $1 AND tenant_id = $2",
                                                 .text(id), .text(tenant)).first,
                  let channel = row.text("channel"), let address = row.text("address") else { return nil }
            // Its campaign rows go first: a campaign's start locks the row before the conversations, so this is the
            // order both take.
            try await db.execute("DELETE FROM campaign_targets WHERE contact_id = $1 AND tenant_id = $2", .text(id), .text(tenant))
            let conversations = try await db.execute(
                "SELECT id FROM conversations WHERE tenant_id = $1 AND channel = $2 AND contact = $3 ORDER BY id\(self.forUpdate)",
                .text(tenant), .text(channel), .text(address)).compactMap { $0.text("id") }
            guard try await !db.execute("SELECT id FROM contacts WHERE id = $1\(self.forUpdate)", .text(id)).isEmpty else { return nil }
            var messages = 0
            for chunk in conversations.chunked(200) {
                let ids = chunk.map(SQLValue.text), list = Self.placeholders(chunk.count)
                messages += try await db.query("DELETE FROM messages WHERE conversation_id IN (\(list)) RETURNING id", ids).count
                for table in ["traces", "message_statuses", "outbox", "events"] {
                    try await db.query("DELETE FROM \(table) WHERE conversation_id IN (\(list))", ids)
                }
                try await db.query("DELETE FROM conversations WHERE id IN (\(list))", ids)
            }
            // What the contact sent that reached no conversation (unrouted, or before a conversation was made).
            try await db.execute("DELETE FROM events WHERE tenant_id = $1 AND channel = $2 AND contact = $3",
                                 .text(tenant), .text(channel), .text(address))
            for table in ["contact_tags", "contact_attributes"] {
                try await db.execute("DELETE FROM \(table) WHERE contact_id = $1", .text(id))
            }
            try await db.execute("DELETE FROM contacts WHERE id = $1", .text(id))
            return (conversations.count, messages)
        }
    }

    /// Inserts many contacts at once (a benchmark's million; an import goes row by row to report each): one
    /// multi-row statement per table and chunk, in one transaction.
    public func insertContacts(_ contacts: [ContactRecord]) async throws {
        try await driver.transaction { db in
            for chunk in contacts.chunked(500) {
                _ = try await self.valuesStatement(
                    "INSERT INTO contacts (id, tenant_id, channel, address, name, phone, attributes, tags, consent_at, consent_source, opted_out_at, created_at, updated_at, last_seen_at)",
                    tuple: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows: chunk.map { c in
                        [.text(c.id), .text(c.tenant), .text(c.channel), .text(c.address), c.name.map(SQLValue.text) ?? .null,
                         c.phone.map(SQLValue.text) ?? .null, .text(Value.map(c.attributes).jsonText),
                         .text(Value.list(c.tags.map(Value.string)).jsonText), c.consentAt.map { .int($0.milliseconds) } ?? .null,
                         c.consentSource.map(SQLValue.text) ?? .null, c.optedOutAt.map { .int($0.milliseconds) } ?? .null,
                         .int(c.createdAt.milliseconds), .int(c.updatedAt.milliseconds), c.lastSeenAt.map { .int($0.milliseconds) } ?? .null]
                    }, db)
            }
            let rows = contacts.map(Self.indexRows)
            try await self.insertIndexRows(tags: rows.flatMap(\.tags), attributes: rows.flatMap(\.attributes), db)
        }
    }

    /// The rows filters search, for a contact whose old ones are gone (or never were).
    func writeContactIndex(_ c: ContactRecord, _ db: any SQLExecutor) async throws {
        let rows = Self.indexRows(c)
        try await insertIndexRows(tags: rows.tags, attributes: rows.attributes, db)
    }

    /// A contact's rows in `contact_tags` and `contact_attributes` (one per value; a list has one per item).
    static func indexRows(_ c: ContactRecord) -> (tags: [[SQLValue]], attributes: [[SQLValue]]) {
        let tags = Array(Set(c.tags)).sorted().map { [SQLValue.text(c.tenant), .text($0), .text(c.id)] }
        var attributes: [[SQLValue]] = []
        for (key, value) in c.attributes.sorted(by: { $0.key < $1.key }) {
            let items: [Value] = if case .list(let l) = value { l } else { [value] }
            for item in items {
                switch item {
                case .number(let n): attributes.append([.text(c.tenant), .text(c.id), .text(key), .text(item.text), .text(String(n))])
                case .bool(let b): attributes.append([.text(c.tenant), .text(c.id), .text(key), .text(b ? "true" : "false"), .null])
                case .string(let s): attributes.append([.text(c.tenant), .text(c.id), .text(key), .text(s), .null])
                default: continue
                }
            }
        }
        return (tags, attributes)
    }

    func insertIndexRows(tags: [[SQLValue]], attributes: [[SQLValue]], _ db: any SQLExecutor) async throws {
        for chunk in tags.chunked(300) {
            _ = try await valuesStatement("INSERT INTO contact_tags (tenant_id, tag, contact_id)", tuple: "(?, ?, ?)", rows: Array(chunk), db)
        }
        for chunk in attributes.chunked(200) {
            _ = try await valuesStatement("INSERT INTO contact_attributes (tenant_id, contact_id, key, text_value, number_value)",
                                          tuple: "(?, ?, ?, ?, CAST(? AS DOUBLE PRECISION))", rows: Array(chunk), db)
        }
    }
}
