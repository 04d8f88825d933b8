import FlowEngine
import FlowVM
import Foundation
import Logging

/// Inbound: group-committed ingest, events posted to conversations, resume links, rerouting.
extension SQLStore {
    // MARK: Inbound

    public func ingest(_ inbound: Inbound, start: PublishedFlow?, newConversationID: String, now: Timestamp) async throws -> IngestResult {
        try await ingest(batch: [IngestItem(inbound: inbound, start: start, newConversationID: newConversationID)], now: now)[0]
    }

    /// Stores a batch of messages in one transaction with a fixed number of statements, whatever its size:
    /// events, contacts, the open conversations (locked, in id order), new conversations, then each event is
    /// attached and each conversation marked due. Items are decided in order, so a later message of a contact
    /// joins the conversation an earlier one of the same batch started.
    public func ingest(batch: [IngestItem], now: Timestamp) async throws -> [IngestResult] {
        // Keys compared with what the database hands back must be spelled as it keeps them.
        let batch = batch.map { item in
            var item = item
            for field in [\Inbound.tenant, \.channel, \.contact, \.providerID] {
                item.inbound[keyPath: field] = SQLValue.storable(item.inbound[keyPath: field])
            }
            return item
        }
        return try await retryingConflicts {
            try await self.driver.transaction { db in
                let results = try await self.ingest(batch, now: now, db)
                Failpoint.hit(.ingestBeforeCommit)
                return results
            }
        }
    }

    /// A contact as the tables key it: tenant, channel and address.
    struct ContactAddress: Hashable {
        var tenant, channel, contact: String
        init(tenant: String, channel: String, contact: String) { (self.tenant, self.channel, self.contact) = (tenant, channel, contact) }
        init(_ i: Inbound) { (tenant, channel, contact) = (i.tenant, i.channel, i.contact) }
        init(_ c: ConversationRecord) { (tenant, channel, contact) = (c.tenant, c.channel, c.contact) }

        /// `(tenant, channel, contact) IN (VALUES …)` bindings for these keys: the tuples' text and their values.
        static func values(_ keys: some Collection<ContactAddress>) -> (tuples: String, binds: [SQLValue]) {
            let tuples = (0..<keys.count).map { i in "($\(3 * i + 1), $\(3 * i + 2), $\(3 * i + 3))" }.joined(separator: ", ")
            return (tuples, keys.flatMap { [SQLValue.text($0.tenant), .text($0.channel), .text($0.contact)] })
        }
    }

    func ingest(_ batch: [IngestItem], now: Timestamp, _ db: any SQLExecutor) async throws -> [IngestResult] {
        let ms = SQLValue.int(now.milliseconds)
        // 1. Events; a provider id seen before (or twice in this batch) inserts nothing and is a duplicate.
        func providerKey(_ tenant: String, _ channel: String, _ id: String) -> String { "\(tenant)\u{0}\(channel)\u{0}\(id)" }
        var inserted: [String: [Int64]] = [:]
        for chunk in batch.chunked(200) {
            let rows = try await valuesStatement(
                "INSERT INTO events (tenant_id, channel, channel_kind, contact, provider_id, kind, body, received_at)",
                tuple: "(?, ?, ?, ?, ?, 'message', ?, ?)",
                rows: chunk.map { item in
                    let i = item.inbound
                    return [.text(i.tenant), .text(i.channel), .text(i.channelKind), .text(i.contact), .text(i.providerID),
                            .text(EventBody.message(i.message).value.jsonText), ms]
                },
                suffix: """
                     ON CONFLICT (tenant_id, channel, provider_id) WHERE provider_id IS NOT NULL DO NOTHING
                    RETURNING seq, tenant_id, channel, provider_id
                    """, db)
            for r in rows {
                guard let seq = r.int("seq") else { continue }
                inserted[providerKey(r.text("tenant_id") ?? "", r.text("channel") ?? "", r.text("provider_id") ?? ""), default: []].append(seq)
            }
        }
        // RETURNING does not promise an order: give each key's rows to its items in batch order.
        var seqs: [Int64?] = []
        for item in batch {
            let key = providerKey(item.inbound.tenant, item.inbound.channel, item.inbound.providerID)
            if var list = inserted[key], !list.isEmpty {
                list.sort()
                seqs.append(list.removeFirst())
                inserted[key] = list
            } else {
                seqs.append(nil)
            }
        }
        let stored = batch.indices.filter { seqs[$0] != nil }
        guard !stored.isEmpty else { return batch.map { _ in .duplicate } }

        // 2. Contacts, once each; the last name and phone given win (written after step 3).
        var names: [ContactAddress: String] = [:], phones: [ContactAddress: String] = [:]
        var contacts: [ContactAddress] = []
        for i in stored {
            let key = ContactAddress(batch[i].inbound)
            if !contacts.contains(key) { contacts.append(key) }
            if let name = batch[i].inbound.contactName { names[key] = name }
            if let phone = batch[i].inbound.contactPhone { phones[key] = phone }
        }
        // 3. Open conversations of these contacts, locked in id order (so concurrent batches cannot deadlock), before
        //    their contacts are: every writer takes conversations first, then contacts in address order.
        var open: [ContactAddress: String] = [:]
        for chunk in contacts.chunked(200) {
            let (tuples, binds) = ContactAddress.values(chunk)
            let rows = try await db.query(
                """
                SELECT id, tenant_id, channel, contact FROM conversations WHERE status IN \(SQLStatus.open)
                AND (tenant_id, channel, contact) IN (VALUES \(tuples)) ORDER BY id\(forUpdate)
                """, binds)
            for r in rows {
                let key = ContactAddress(tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "", contact: r.text("contact") ?? "")
                open[key] = r.text("id")
            }
        }

        // Contacts, in address order (the order a turn's contact edits lock them in). The channel's profile name fills
        // a record that has none; a name the business gave (or the first one the channel reported) is kept.
        let ordered = contacts.sorted { ($0.tenant, $0.channel, $0.contact) < ($1.tenant, $1.channel, $1.contact) }
        for chunk in ordered.chunked(200) {
            try await valuesStatement(
                "INSERT INTO contacts (id, tenant_id, channel, address, name, phone, created_at, updated_at, last_seen_at)",
                tuple: "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows: chunk.map { k in
                    [.text(ContactRecord.newID()), .text(k.tenant), .text(k.channel), .text(k.contact), names[k].map(SQLValue.text) ?? .null,
                     phones[k].map(SQLValue.text) ?? .null, ms, ms, ms]
                },
                suffix: """
                     ON CONFLICT (tenant_id, channel, address) DO UPDATE SET name = COALESCE(contacts.name, EXCLUDED.name),
                      phone = COALESCE(EXCLUDED.phone, contacts.phone), last_seen_at = EXCLUDED.last_seen_at
                    """, db)
        }

        // 4. Decide each message in order: its contact's open conversation, a new one of its start flow, or none.
        var results: [IngestResult] = batch.map { _ in .duplicate }
        var started: [[SQLValue]] = []
        var startedIDs: Set<String> = []
        var attach: [(seq: Int64, conversation: String)] = []
        var unrouted: [Int64] = []
        var due: [String] = []
        var optingOut: [(seq: Int64, item: IngestItem, conversation: String?)] = []
        for i in stored {
            let item = batch[i], key = ContactAddress(item.inbound), seq = seqs[i]!
            if item.optOut != nil {
                // Ends the open conversation (below, once the batch's new ones exist); a later message starts afresh.
                optingOut.append((seq, item, open[key]))
                open[key] = nil
                results[i] = .optedOut
            } else if let conversation = open[key] {
                attach.append((seq, conversation))
                if !startedIDs.contains(conversation), !due.contains(conversation) { due.append(conversation) }
                results[i] = .accepted(conversation: conversation, started: false)
            } else if let start = item.start {
                let id = item.newConversationID
                open[key] = id
                startedIDs.insert(id)
                started.append([.text(id), .text(key.tenant), .text(key.channel), .text(item.inbound.channelKind), .text(key.contact),
                                .text(start.name), .text(start.programHash), ms, ms, ms])
                attach.append((seq, id))
                results[i] = .accepted(conversation: id, started: true)
            } else {
                unrouted.append(seq)
                results[i] = .unrouted
            }
        }
        try await insertRows(
            "INSERT INTO conversations (id, tenant_id, channel, channel_kind, contact, flow, program_hash, status, due_at, created_at, updated_at)",
            tuple: "(?, ?, ?, ?, ?, ?, ?, \(SQLStatus.active), ?, ?, ?)", rows: started, db)
        for chunk in attach.chunked(200) {
            let cases = (0..<chunk.count).map { i in "WHEN $\(2 * i + 1) THEN $\(2 * i + 2)" }.joined(separator: " ")
            try await db.query(
                """
                UPDATE events SET conversation_id = CASE seq \(cases) END, disposition = NULL
                WHERE seq IN (\(Self.placeholders(chunk.count, from: 2 * chunk.count + 1)))
                """, chunk.flatMap { [SQLValue.int($0.seq), .text($0.conversation)] } + chunk.map { SQLValue.int($0.seq) })
        }
        for chunk in unrouted.chunked(500) {
            try await db.query("UPDATE events SET processed_at = $1, disposition = 'unrouted' WHERE seq IN (\(Self.placeholders(chunk.count, from: 2)))",
                               [ms] + chunk.map(SQLValue.int))
        }
        for chunk in due.chunked(500) {
            try await db.query(
                "UPDATE conversations SET due_at = CASE WHEN due_at IS NULL OR due_at > $1 THEN $1 ELSE due_at END WHERE id IN (\(Self.placeholders(chunk.count, from: 2)))",
                [ms] + chunk.map(SQLValue.text))
        }
        // Opt-outs are rare: a few statements each.
        for o in optingOut {
            try await optOut(seq: o.seq, o.item.inbound, conversation: o.conversation, reply: o.item.optOut?.reply, now: now, db)
        }
        return results
    }

    /// SQLite reports a unique-index race as an error too; two new conversations for one contact, say. The
    /// transaction rolled back, so trying again sees the winner's row.
    func retryingConflicts<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch let e as StoreError {
                throw e
            } catch {
                attempt += 1
                if attempt >= 4 { throw error }
                logger.debug("retrying a transaction after a conflict", metadata: ["attempt": "\(attempt)"])
            }
        }
    }

    /// Attaches event `seq` to the contact's open conversation, or to a new one of `start`, or marks it unrouted.
    func route(seq: Int64, _ inbound: Inbound, start: PublishedFlow?, newConversationID: String, optOut opting: OptOut?, now: Timestamp,
                       _ db: any SQLExecutor) async throws -> IngestResult {
        let open = try await db.execute(
            """
            SELECT id FROM conversations WHERE tenant_id = $1 AND channel = $2 AND contact = $3
            AND status IN \(SQLStatus.open)\(forUpdate)
            """, .text(inbound.tenant), .text(inbound.channel), .text(inbound.contact))
        var conversation = open.first?.text("id")
        if let opting {
            try await optOut(seq: seq, inbound, conversation: conversation, reply: opting.reply, now: now, db)
            return .optedOut
        }
        var started = false
        if conversation == nil, let start {
            try await db.execute(
                """
                INSERT INTO conversations (id, tenant_id, channel, channel_kind, contact, flow, program_hash, status, due_at,
                  created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \(SQLStatus.active), $8, $8, $8)
                """,
                .text(newConversationID), .text(inbound.tenant), .text(inbound.channel), .text(inbound.channelKind),
                .text(inbound.contact), .text(start.name), .text(start.programHash), .int(now.milliseconds))
            conversation = newConversationID
            started = true
        }
        guard let conversation else {
            try await db.execute("UPDATE events SET processed_at = $2, disposition = 'unrouted' WHERE seq = $1",
                                 .int(seq), .int(now.milliseconds))
            return .unrouted
        }
        try await db.run(Hot.AttachEvent.self, .int(seq), .text(conversation))
        try await markDue(conversation, now: now, db)
        return .accepted(conversation: conversation, started: started)
    }

    func markDue(_ conversation: String, now: Timestamp, _ db: any SQLExecutor) async throws {
        try await db.run(Hot.MarkDue.self, .text(conversation), .int(now.milliseconds))
    }

    public func post(_ body: EventBody, conversation: String, tenant: String, providerID: String?, now: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            let found = try await db.execute(
                "SELECT channel, contact, status FROM conversations WHERE id = $1 AND tenant_id = $2\(self.forUpdate)",
                .text(conversation), .text(tenant))
            guard let row = found.first, let channel = row.text("channel") else { return false }
            let status = ConversationStatus(rawValue: row.text("status") ?? "") ?? .failed
            var otherOpen = false
            if ConversationLifecycle.needsOtherOpenCheck(body, status: status) {
                otherOpen = try await !db.execute(
                    """
                    SELECT id FROM conversations WHERE tenant_id = $1 AND channel = $2 AND contact = $3 AND id <> $4
                    AND status IN \(SQLStatus.open)
                    """, .text(tenant), .text(channel), .text(row.text("contact") ?? ""), .text(conversation)).isEmpty
            }
            if let refusal = ConversationLifecycle.refusal(body, status: status, otherOpenConversation: otherOpen) { throw refusal }
            if status == .scheduled {
                // Cancelled before its time: it ends here, and its start is never run.
                try await db.execute(
                    """
                    UPDATE conversations SET status = \(SQLStatus.ended), failure = 'cancelled before it started', due_at = NULL,
                      row_version = row_version + 1, updated_at = $2 WHERE id = $1
                    """, .text(conversation), .int(now.milliseconds))
                try await db.execute("UPDATE events SET processed_at = $2, disposition = 'ignored' WHERE conversation_id = $1 AND processed_at IS NULL",
                                     .text(conversation), .int(now.milliseconds))
                return true
            }
            try await self.insertEvent(body, tenant: tenant, channel: channel, conversation: conversation, providerID: providerID, now: now, db)
            return true
        }
    }

    /// Inserts an event and marks its conversation due; false when `providerID` was seen before.
    @discardableResult
    func insertEvent(_ body: EventBody, tenant: String, channel: String, conversation: String, providerID: String?,
                             now: Timestamp, _ db: any SQLExecutor) async throws -> Bool {
        let rows = try await db.execute(
            """
            INSERT INTO events (tenant_id, channel, provider_id, conversation_id, kind, body, received_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (tenant_id, channel, provider_id) WHERE provider_id IS NOT NULL DO NOTHING RETURNING seq
            """,
            .text(tenant), .text(channel), providerID.map(SQLValue.text) ?? .null, .text(conversation), .text(body.kind),
            .text(body.value.jsonText), .int(now.milliseconds))
        if !rows.isEmpty { try await markDue(conversation, now: now, db) }
        return !rows.isEmpty
    }

    public func postExternal(tenant: String, name: String, key: String, payload: Value, providerID: String?, now: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            let waiting = try await db.execute(
                "SELECT id, channel FROM conversations WHERE tenant_id = $1 AND wait_key = $2\(self.forUpdate)",
                .text(tenant), .text("\(name):\(key)"))
            guard let row = waiting.first, let id = row.text("id"), let channel = row.text("channel") else { return false }
            return try await self.insertEvent(.external(name: name, key: key, payload: payload), tenant: tenant, channel: channel,
                                              conversation: id, providerID: providerID, now: now, db)
        }
    }

    public func postResume(conversation: String, token: String, payload: Value, now: Timestamp,
                           expectedToken: @Sendable (_ tenant: String, _ effectKey: String) -> String) async throws -> Bool {
        try await driver.transaction { db in
            let rows = try await db.execute(
                "SELECT tenant_id, channel, wait_kind, wait_key, step FROM conversations WHERE id = $1 AND status IN \(SQLStatus.open)\(self.forUpdate)",
                .text(conversation))
            guard let row = rows.first, let tenant = row.text("tenant_id"), let channel = row.text("channel") else { return false }
            let given = Array(token.utf8)
            // Waiting on this link: the key it waits on is the token itself. Still waiting for the call that handed
            // it out (a fast system answers before the call's result is in): the token must be the one that call's
            // key makes. Either way compared in constant time; the event then waits in order behind that result.
            let genuine: Bool
            if row.text("wait_kind") == "effect", let step = row.int("step") {
                genuine = SecretBox.constantTimeEqual(given, Array(expectedToken(tenant, "\(conversation):\(step)").utf8))
            } else if let key = row.text("wait_key"), key.hasPrefix("resume:") {
                genuine = SecretBox.constantTimeEqual(Array("resume:".utf8) + given, Array(key.utf8))
            } else {
                genuine = false
            }
            guard genuine else { return false }
            return try await self.insertEvent(.external(name: "resume", key: token, payload: payload), tenant: tenant, channel: channel,
                                              conversation: conversation, providerID: "resume:" + token, now: now, db)
        }
    }

    public func messagesToReroute(limit: Int) async throws -> [(sequence: Int64, inbound: Inbound)] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT seq, tenant_id, channel, channel_kind, contact, provider_id, body FROM events
                WHERE disposition = 'reroute' AND processed_at IS NULL ORDER BY seq LIMIT $1
                """, .int(Int64(limit))
            ).compactMap { r in
                guard let seq = r.int("seq"), case .message(let m)? = EventBody(value: Value(json: r.text("body") ?? "") ?? .null)
                else { return nil }
                return (seq, Inbound(tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "",
                                     channelKind: r.text("channel_kind") ?? "", contact: r.text("contact") ?? "",
                                     providerID: r.text("provider_id") ?? "", message: m))
            }
        }
    }

    public func reroute(sequence: Int64, inbound: Inbound, start: PublishedFlow?, newConversationID: String, optOut: OptOut?,
                        now: Timestamp) async throws {
        _ = try await retryingConflicts {
            try await self.driver.transaction { db in
                let still = try await db.execute(
                    "SELECT seq FROM events WHERE seq = $1 AND disposition = 'reroute' AND processed_at IS NULL\(self.forUpdate)",
                    .int(sequence))
                guard !still.isEmpty else { return IngestResult.duplicate }
                return try await self.route(seq: sequence, inbound, start: start, newConversationID: newConversationID, optOut: optOut,
                                            now: now, db)
            }
        }
    }
}
