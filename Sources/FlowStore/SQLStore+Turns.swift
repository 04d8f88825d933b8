import FlowEngine
import FlowVM
import Foundation
import Logging

/// Turns: claim (a lease), run outside any transaction, write the outcomes in one transaction.
extension SQLStore {
    // MARK: Turns

    public func runTurns(limit: Int, now: Timestamp, lease: Int64,
                         _ turn: @Sendable (TurnWork, @Sendable (String) async throws -> Program?) async throws -> TurnMachine.Outcome)
        async throws -> Int
    {
        // 1. Claim: a short transaction leases the due conversations and reads what their turns need. No flow runs
        //    while a lock is held, so a slow turn (a pattern near its budget, a large value) delays only itself.
        let claimed = try await claimTurns(limit: limit, now: now, lease: lease)
        guard !claimed.works.isEmpty || claimed.poisoned > 0 else { return 0 }
        Failpoint.hit(.turnAfterClaim)
        // 2. Run every turn outside any transaction.
        var outcomes: [(work: TurnWork, outcome: TurnMachine.Outcome)] = []
        for work in claimed.works {
            let outcome: TurnMachine.Outcome
            do {
                outcome = try await turn(work) { hash in try await self.program(hash: hash) }
            } catch {
                // A turn that cannot run (its program is missing or unreadable) fails the conversation, visibly.
                outcome = Self.failed(work.conversation, "turn could not run: \(error)")
            }
            outcomes.append((work, outcome))
        }
        Failpoint.hit(.turnAfterRun, Array(Set(claimed.works.flatMap { w in w.events.isEmpty ? ["timer"] : w.events.map(\.body.kind) })))
        // 3. Write: one transaction for the batch; should it fail, each turn on its own, so one outcome the database
        //    refuses fails its own conversation and no other.
        do {
            try await retryingConflicts { try await self.writeTurns(outcomes, now: now) }
        } catch {
            logger.warning("a batch of turns could not be written together; writing them one by one",
                           metadata: ["turns": "\(outcomes.count)", "error": "\(String(reflecting: type(of: error)))"])
            for item in outcomes {
                do {
                    try await retryingConflicts { try await self.writeTurns([item], now: now) }
                } catch {
                    logger.warning("a turn could not be written; its conversation is marked failed",
                                   metadata: ["conversation": "\(item.work.conversation.id)", "error": "\(String(reflecting: type(of: error)))"])
                    let failed = Self.failed(item.work.conversation, "its turn could not be stored (\(String(reflecting: type(of: error))))")
                    try? await writeTurns([(item.work, failed)], now: now)
                }
            }
        }
        return claimed.works.count + claimed.poisoned
    }

    /// A conversation failed with `reason`, its events left as they are (kept, unprocessed, for an operator).
    static func failed(_ record: ConversationRecord, _ reason: String) -> TurnMachine.Outcome {
        var failed = TurnMachine.Outcome(conversation: record)
        failed.conversation.status = .failed
        failed.conversation.failure = reason
        return failed
    }

    /// Leases up to `limit` due conversations and reads their events and contacts. A row whose saved state cannot be
    /// read is marked failed here, with the reason, and skipped: it must not stop the batch, nor every batch after it.
    func claimTurns(limit: Int, now: Timestamp, lease: Int64) async throws -> (works: [TurnWork], poisoned: Int) {
        try await driver.transaction { db in
            // A lease lost in a crash costs nothing (the version check keeps one outcome), so its commit need not
            // wait for the disk. A poisoned row's failure below shares this commit; the next claim repeats it.
            if self.postgres { try await db.execute("SET LOCAL synchronous_commit = off") }
            let due = try await db.execute(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at, updated_at
                FROM conversations WHERE due_at IS NOT NULL AND due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                ORDER BY due_at LIMIT $2\(self.skipLocked)
                """, .int(now.milliseconds), .int(Int64(limit)))
            var records: [ConversationRecord] = []
            var poisoned = 0
            for row in due {
                let (record, unreadable) = self.conversationRow(row)
                guard let unreadable else {
                    records.append(record)
                    continue
                }
                poisoned += 1
                self.logger.warning("a conversation's saved state cannot be read; it is marked failed",
                                    metadata: ["conversation": "\(record.id)", "error": "\(unreadable)"])
                try await db.execute(
                    """
                    UPDATE conversations SET status = \(SQLStatus.failed), failure = $2, due_at = NULL, wake_at = NULL, wait_kind = NULL,
                      wait_key = NULL, lease_until = NULL, row_version = row_version + 1, updated_at = $3 WHERE id = $1
                    """, .text(record.id), .text(unreadable), .int(now.milliseconds))
            }
            records = try await self.startScheduled(records, now: now, db)
            guard !records.isEmpty else { return ([], poisoned) }
            try await db.query(
                "UPDATE conversations SET lease_until = $1 WHERE id IN (\(Self.placeholders(records.count, from: 2)))",
                [.int(now.milliseconds + lease * 1000)] + records.map { .text($0.id) })
            // Reads are per batch, not per conversation: a batch of turns costs a handful of round trips
            // (see docs/engine.md, "Batched turns").
            let events = try await self.pendingEvents(of: records, db)
            // Only a first turn reads who the contact is (the VM keeps it from then on).
            let known = try await self.contactDetails(of: records.filter { $0.continuation == nil }, db)
            let works = records.map { record in
                // `contact.phone`: the number stored with the contact (a WhatsApp contact keyed by its business-scoped
                // user id has one when the notification carried it), else the address unless it is such an id.
                let details = known[ContactAddress(record)]
                let phone = details?.phone ?? (Inbound.isBusinessScopedUserID(record.contact) ? nil : record.contact)
                let contact = ContactAttributes.flowValue(address: record.contact, name: details?.name, phone: phone,
                                                          attributes: details?.attributes ?? [:], tags: details?.tags ?? [])
                return TurnWork(conversation: record, events: events[record.id] ?? [], contact: contact)
            }
            return (works, poisoned)
        }
    }

    /// Scheduled conversations whose time has come take their contact's slot and run, unless the contact opted out
    /// or is in another open conversation on the channel meanwhile: then it ends unstarted, with the reason. (Two
    /// starts racing for one slot: the unique index refuses the second, this claim rolls back, and the next one
    /// finds the slot taken.)
    func startScheduled(_ records: [ConversationRecord], now: Timestamp, _ db: any SQLExecutor) async throws -> [ConversationRecord] {
        var kept: [ConversationRecord] = []
        for var r in records {
            guard r.status == .scheduled else {
                kept.append(r)
                continue
            }
            let other = try await db.execute(
                "SELECT id FROM conversations WHERE tenant_id = $1 AND channel = $2 AND contact = $3 AND status IN \(SQLStatus.open) LIMIT 1",
                .text(r.tenant), .text(r.channel), .text(r.contact)).first?.text("id")
            let optedOut = try await db.execute(
                "SELECT opted_out_at FROM contacts WHERE tenant_id = $1 AND channel = $2 AND address = $3",
                .text(r.tenant), .text(r.channel), .text(r.contact)).first?.int("opted_out_at") != nil
            if optedOut || other != nil {
                let reason = optedOut ? "not started at its time: the contact opted out" : "not started at its time: the contact was in conversation \(other!)"
                try await db.execute(
                    """
                    UPDATE conversations SET status = \(SQLStatus.ended), failure = $2, due_at = NULL, row_version = row_version + 1, updated_at = $3
                    WHERE id = $1
                    """, .text(r.id), .text(reason), .int(now.milliseconds))
                try await db.execute("UPDATE events SET processed_at = $2, disposition = 'ignored' WHERE conversation_id = $1 AND processed_at IS NULL",
                                     .text(r.id), .int(now.milliseconds))
                continue
            }
            try await db.execute("UPDATE conversations SET status = \(SQLStatus.active), row_version = row_version + 1 WHERE id = $1", .text(r.id))
            r.status = .active
            r.version += 1
            kept.append(r)
        }
        return kept
    }

    /// Writes turns' outcomes in one transaction. A conversation changed since its claim (its lease ran out and
    /// another worker ran it, or it was migrated) keeps that change and this outcome is dropped: one outcome lands
    /// per claim. An event that arrived while the turn ran leaves its conversation due.
    func writeTurns(_ outcomes: [(work: TurnWork, outcome: TurnMachine.Outcome)], now: Timestamp) async throws {
        try await driver.transaction { db in
            let ids = outcomes.map(\.work.conversation.id)
            // Locked in id order, as ingest locks them, so two writers never wait on each other in a circle.
            let current = try await db.query(
                "SELECT id, row_version FROM conversations WHERE id IN (\(Self.placeholders(ids.count))) ORDER BY id\(self.forUpdate)",
                ids.map(SQLValue.text))
            var versions: [String: Int64] = [:]
            for r in current { if let id = r.text("id") { versions[id] = r.int("row_version") ?? -1 } }
            let fresh = outcomes.filter { versions[$0.work.conversation.id] == $0.work.conversation.version }
            if fresh.count < outcomes.count {
                self.logger.debug("turns dropped: their conversations changed since they were claimed",
                                  metadata: ["dropped": "\(outcomes.count - fresh.count)"])
            }
            guard !fresh.isEmpty else { return }
            var writes = TurnWrites()
            for item in fresh { try await self.write(item.outcome, now: now, into: &writes, db) }
            try await self.flush(writes, now: now, db)
            try await self.applyContactEdits(writes.contactEdits, now: now, db)
            // Events stored while the turns ran (their due mark came before this write and was overwritten).
            let seen = Set(fresh.flatMap { $0.work.events.map(\.sequence) })
            let pending = try await db.query(
                "SELECT conversation_id, seq FROM events WHERE processed_at IS NULL AND conversation_id IN (\(Self.placeholders(fresh.count)))",
                fresh.map { .text($0.work.conversation.id) })
            let late = Set(pending.compactMap { r -> String? in
                guard let seq = r.int("seq"), !seen.contains(seq) else { return nil }
                return r.text("conversation_id")
            })
            for id in late { try await self.markDue(id, now: now, db) }
        }
    }

    /// The unprocessed events of these conversations, oldest first, in one query.
    func pendingEvents(of records: [ConversationRecord], _ db: any SQLExecutor) async throws -> [String: [PendingEvent]] {
        var result: [String: [PendingEvent]] = [:]
        let rows = try await db.query(
            "SELECT conversation_id, seq, body, received_at FROM events WHERE processed_at IS NULL AND conversation_id IN (\(Self.placeholders(records.count))) ORDER BY seq",
            records.map { .text($0.id) })
        for r in rows {
            guard let conversation = r.text("conversation_id"), let seq = r.int("seq"),
                  let body = EventBody(value: Value(json: r.text("body") ?? "") ?? .null) else { continue }
            result[conversation, default: []].append(
                PendingEvent(sequence: seq, body: body, receivedAt: Timestamp(milliseconds: r.int("received_at") ?? 0)))
        }
        return result
    }

    /// The phone number stored for a contact, when its address is not one (a WhatsApp business-scoped user id).
    public func contactPhone(tenant: String, channel: String, contact: String) async throws -> String? {
        try await driver.transaction { db in
            try await db.execute("SELECT phone FROM contacts WHERE tenant_id = $1 AND channel = $2 AND address = $3",
                                 .text(tenant), .text(channel), .text(contact)).first?.text("phone")
        }
    }

    /// The names, phone numbers, attributes and tags of these conversations' contacts, in one query.
    func contactDetails(of records: [ConversationRecord], _ db: any SQLExecutor) async throws
        -> [ContactAddress: (name: String?, phone: String?, attributes: [String: Value], tags: [String])]
    {
        guard !records.isEmpty else { return [:] }
        let (tuples, binds) = ContactAddress.values(Set(records.map(ContactAddress.init)))
        let rows = try await db.query(
            "SELECT tenant_id, channel, address, name, phone, attributes, tags FROM contacts WHERE (tenant_id, channel, address) IN (VALUES \(tuples))",
            binds)
        var details: [ContactAddress: (name: String?, phone: String?, attributes: [String: Value], tags: [String])] = [:]
        for r in rows {
            let name = r.text("name"), phone = r.text("phone").flatMap { $0.isEmpty ? nil : $0 }
            details[ContactAddress(tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "", contact: r.text("address") ?? "")] =
                (name, phone, Self.jsonMap(r.text("attributes")), Self.jsonTexts(r.text("tags")))
        }
        return details
    }

    /// Merges flows' `contact:` edits into their contacts' records as they are now, locked in address order after the
    /// conversations (the order ingest and erasure take them too, so no two writers wait on each other in a circle).
    /// A contact deleted through the API while its conversation went on is created again: it is still talking to
    /// the business. An edit the record cannot take (it would pass a contact's limits, because another conversation
    /// added to it meanwhile) is left out, logged without its values, and the turn commits without it.
    func applyContactEdits(_ edits: [ContactAddress: [ContactPatch]], now: Timestamp, _ db: any SQLExecutor) async throws {
        guard !edits.isEmpty else { return }
        let keys = edits.keys.sorted { ($0.tenant, $0.channel, $0.contact) < ($1.tenant, $1.channel, $1.contact) }
        var records: [ContactAddress: ContactRecord] = [:]
        for chunk in keys.chunked(200) {
            let (tuples, binds) = ContactAddress.values(chunk)
            let rows = try await db.query(
                """
                SELECT id, tenant_id, channel, address, attributes, tags FROM contacts
                WHERE (tenant_id, channel, address) IN (VALUES \(tuples)) ORDER BY tenant_id, channel, address\(forUpdate)
                """, binds)
            for r in rows {
                let key = ContactAddress(tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "", contact: r.text("address") ?? "")
                records[key] = ContactRecord(id: r.text("id") ?? "", tenant: key.tenant, channel: key.channel, address: key.contact,
                                             attributes: Self.jsonMap(r.text("attributes")),
                                             tags: Self.jsonTexts(r.text("tags")), createdAt: now)
            }
        }
        var changed: [ContactRecord] = []
        for key in keys {
            let existing = records[key]
            var c = existing ?? ContactRecord(id: ContactRecord.newID(), tenant: key.tenant, channel: key.channel, address: key.contact, createdAt: now)
            for patch in edits[key] ?? [] {
                if let problem = patch.apply(attributes: &c.attributes, tags: &c.tags) {
                    logger.warning("a flow's contact edit was left out: the record could not take it",
                                   metadata: ["contact": "\(c.id)", "reason": "\(problem.message)"])
                }
            }
            if let existing {
                try await db.execute(
                    "UPDATE contacts SET attributes = $2, tags = $3, updated_at = $4, revision = revision + 1 WHERE id = $1",
                    .text(existing.id), .text(Value.map(c.attributes).jsonText),
                    .text(Value.list(c.tags.map(Value.string)).jsonText), .int(now.milliseconds))
            } else {
                try await db.execute(
                    """
                    INSERT INTO contacts (id, tenant_id, channel, address, attributes, tags, created_at, updated_at, revision)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0)
                    """, .text(c.id), .text(c.tenant), .text(c.channel), .text(c.address),
                    .text(Value.map(c.attributes).jsonText), .text(Value.list(c.tags.map(Value.string)).jsonText), .int(now.milliseconds))
            }
            changed.append(c)
        }
        for chunk in changed.chunked(200) {
            let ids = chunk.map { SQLValue.text($0.id) }, list = Self.placeholders(chunk.count)
            try await db.query("DELETE FROM contact_tags WHERE contact_id IN (\(list))", ids)
            try await db.query("DELETE FROM contact_attributes WHERE contact_id IN (\(list))", ids)
            var tags: [[SQLValue]] = [], attributes: [[SQLValue]] = []
            for c in chunk {
                let rows = Self.indexRows(c)
                tags += rows.tags
                attributes += rows.attributes
            }
            try await insertIndexRows(tags: tags, attributes: attributes, db)
        }
    }

    static func placeholders(_ count: Int, from first: Int = 1) -> String {
        (first..<first + count).map { "$\($0)" }.joined(separator: ", ")
    }

    /// What a batch of turns appends, gathered so each table gets one multi-row statement per batch.
    struct TurnWrites {
        /// `Hot.UpdateConversation`'s parameters, one row per turn.
        var conversations: [[SQLValue]] = []
        var processed: [String: [Int64]] = [:]
        var rerouted: [Int64] = []
        var outbox: [[SQLValue]] = []
        var messages: [[SQLValue]] = []
        var traces: [[SQLValue]] = []
        /// Flows' edits to their contacts, in the order the turns made them.
        var contactEdits: [ContactAddress: [ContactPatch]] = [:]
    }

    /// Queues a turn's writes (its conversation row is locked by this transaction until the batch commits).
    func write(_ o: TurnMachine.Outcome, now: Timestamp, into writes: inout TurnWrites, _ db: any SQLExecutor) async throws {
        let c = o.conversation
        let wait = c.continuation?.wait
        writes.conversations.append([
            .text(c.id), c.continuation.map { SQLValue.blob($0.encoded()) } ?? .null, .text(c.status.rawValue),
            wait.map { SQLValue.text($0.kind) } ?? .null, c.waitKey.map(SQLValue.text) ?? .null,
            wait?.deadline.map { SQLValue.int($0.milliseconds) } ?? .null,
            o.dueAt.map { SQLValue.int($0.milliseconds) } ?? .null, .int(Int64(c.continuation?.step ?? 0)),
            c.failure.map(SQLValue.text) ?? .null, .int(max(c.updatedAt, now).milliseconds)])
        for (seq, disposition) in o.processed {
            if disposition == .reroute { writes.rerouted.append(seq) } else { writes.processed[disposition.rawValue, default: []].append(seq) }
        }
        for e in o.outbox {
            writes.outbox.append([.text(c.tenant), .text(c.id), .text(e.idempotencyKey), .int(Int64(e.effectID)), .text(e.kind.rawValue),
                                  .text(e.action), .text(e.payload.jsonText), .int(now.milliseconds)])
        }
        for m in o.messages {
            writes.messages.append([.text(c.tenant), .text(c.id), .text(m.direction.rawValue), .text(m.text), .text(m.extra.jsonText),
                                    .int(m.at.milliseconds)])
        }
        if !o.contactEdits.isEmpty { writes.contactEdits[ContactAddress(c), default: []] += o.contactEdits }
        for t in o.traces {
            writes.traces.append([.text(c.tenant), .text(c.id), .text(t.event.jsonText), .text(Value.list(t.visited.map(Value.string)).jsonText),
                                  .text(t.effects.jsonText), .text(t.wait.jsonText), .text(t.status.rawValue), .int(t.at.milliseconds)])
        }
    }

    func flush(_ w: TurnWrites, now: Timestamp, _ db: any SQLExecutor) async throws {
        if postgres {
            // One UPDATE … FROM (VALUES …) per batch; the casts give each column its type.
            for chunk in w.conversations.chunked(200) {
                try await valuesStatement(
                    "UPDATE conversations AS c SET continuation = v.continuation, status = v.status, wait_kind = v.wait_kind, wait_key = v.wait_key, wake_at = v.wake_at, due_at = v.due_at, step = v.step, row_version = c.row_version + 1, failure = v.failure, updated_at = v.updated_at, lease_until = NULL FROM (",
                    tuple: "(?::text, ?::bytea, ?::text, ?::text, ?::text, ?::bigint, ?::bigint, ?::bigint, ?::text, ?::bigint)",
                    rows: Array(chunk),
                    suffix: ") AS v(id, continuation, status, wait_kind, wait_key, wake_at, due_at, step, failure, updated_at) WHERE c.id = v.id", db)
            }
        } else {
            // SQLite runs in-process: a statement per row costs no round trip.
            for row in w.conversations { try await db.run(Hot.UpdateConversation.self, row) }
        }
        for (disposition, seqs) in w.processed {
            for chunk in seqs.chunked(500) {
                try await db.query("UPDATE events SET processed_at = $1, disposition = $2 WHERE seq IN (\(Self.placeholders(chunk.count, from: 3)))",
                                   [.int(now.milliseconds), .text(disposition)] + chunk.map(SQLValue.int))
            }
        }
        for chunk in w.rerouted.chunked(500) {
            try await db.query("UPDATE events SET disposition = 'reroute', conversation_id = NULL WHERE seq IN (\(Self.placeholders(chunk.count)))",
                               chunk.map(SQLValue.int))
        }
        // Rows keep their order within a statement, so each conversation's outbox and messages stay in sequence.
        try await insertRows("INSERT INTO outbox (tenant_id, conversation_id, idempotency_key, effect_id, kind, action, payload, state, next_attempt_at, created_at)",
                             tuple: "(?, ?, ?, ?, ?, ?, ?, \(SQLStatus.pending), ?, ?)", rows: w.outbox.map { $0 + [$0[7]] },
                             suffix: " ON CONFLICT (idempotency_key) DO NOTHING", db)
        try await insertRows("INSERT INTO messages (tenant_id, conversation_id, direction, text, extra, at)",
                             tuple: "(?, ?, ?, ?, ?, ?)", rows: w.messages, db)
        try await insertRows("INSERT INTO traces (tenant_id, conversation_id, event, visited, effects, wait, status, at)",
                             tuple: "(?, ?, ?, ?, ?, ?, ?, ?)", rows: w.traces, db)
    }

    /// A multi-row INSERT per chunk of rows; `tuple` spells one row with `?` for each bound value.
    func insertRows(_ head: String, tuple: String, rows: [[SQLValue]], suffix: String = "", _ db: any SQLExecutor) async throws {
        for chunk in rows.chunked(200) { try await valuesStatement(head, tuple: tuple, rows: Array(chunk), suffix: suffix, db) }
    }

    /// One statement `head VALUES tuple, tuple, ... suffix` over all `rows` (empty: none); returns its rows.
    @discardableResult
    func valuesStatement(_ head: String, tuple: String, rows: [[SQLValue]], suffix: String = "",
                                 _ db: any SQLExecutor) async throws -> [SQLRow] {
        guard !rows.isEmpty else { return [] }
        let parts = tuple.split(separator: "?", omittingEmptySubsequences: false)
        var sql = head + " VALUES "
        var n = 0
        for i in rows.indices {
            if i > 0 { sql += ", " }
            for (j, part) in parts.enumerated() {
                sql += part
                if j < parts.count - 1 {
                    n += 1
                    sql += "$\(n)"
                }
            }
        }
        return try await db.query(sql + suffix, rows.flatMap { $0 })
    }

    /// A conversation row, and why its saved state could not be decoded when it could not. Such a record has no
    /// continuation and the reason in `failure`, so a listing never fails on one bad row; a turn never runs it.
    func conversationRow(_ r: SQLRow) -> (record: ConversationRecord, unreadable: String?) {
        var continuation: Continuation?
        var unreadable: String?
        if let bytes = r.blob("continuation") {
            do {
                continuation = try Continuation(decoding: bytes)
            } catch {
                unreadable = "its saved state cannot be read: \(error)"
            }
        }
        var record = ConversationRecord(
            id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "",
            contact: r.text("contact") ?? "", flow: r.text("flow") ?? "", programHash: r.text("program_hash") ?? "",
            continuation: continuation, status: ConversationStatus(rawValue: r.text("status") ?? "") ?? .failed,
            failure: r.text("failure") ?? unreadable, createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0),
            updatedAt: Timestamp(milliseconds: r.int("updated_at") ?? 0))
        record.version = r.int("row_version") ?? 0
        return (record, unreadable)
    }

    func conversationRecord(_ r: SQLRow) -> ConversationRecord { conversationRow(r).record }
}
