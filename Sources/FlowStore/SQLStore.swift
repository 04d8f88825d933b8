import FlowEngine
import FlowVM
import Foundation
import Logging

/// The FlowStore module's one public error.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case configuration
        /// The database's schema is newer than this build: refuse rather than corrupt it.
        case schemaTooNew = "schema_too_new"
        case corrupt
    }
    public var code: Code
    public var message: String
    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}

/// The `Store` for both databases: one schema and one set of queries, over a PostgreSQL or SQLite driver.
///
/// Every read of a tenant's data is scoped by `tenant_id`; every value is a bound parameter.
public final class SQLStore: Store, @unchecked Sendable {
    let driver: any SQLDriver
    let logger: Logger
    private let keyCache = ExpiringCache<String, APIKeyRecord>(lifetime: .seconds(2))
    private let channelCache = ExpiringCache<ChannelKey, ChannelRecord>(lifetime: .seconds(2))

    init(driver: any SQLDriver, logger: Logger) {
        self.driver = driver
        self.logger = logger
    }

    /// Opens `sqlite:PATH` (or `sqlite::memory:`) or `postgres://user:password@host:port/database`.
    public static func open(_ url: String, logger: Logger = Logger(label: "flowline.store")) async throws -> SQLStore {
        if url.hasPrefix("sqlite:") {
            return SQLStore(driver: try await SQLiteDriver(path: String(url.dropFirst("sqlite:".count)), logger: logger), logger: logger)
        }
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return SQLStore(driver: try PostgresDriver(url: url, logger: logger), logger: logger)
        }
        throw StoreError(.configuration, "database must be sqlite:PATH or postgres://...")
    }

    public func close() async { await driver.close() }

    private var postgres: Bool { driver.dialect == .postgres }
    /// Row locks where the database has them; SQLite's single writer makes them unnecessary.
    private var skipLocked: String { postgres ? " FOR UPDATE SKIP LOCKED" : "" }
    private var forUpdate: String { postgres ? " FOR UPDATE" : "" }

    // MARK: Migrations

    /// Schema versions, in order; a version is never edited once released, only followed by a new one.
    static func migrations(_ d: SQLDialect) -> [[String]] {
        let blob = d == .postgres ? "BYTEA" : "BLOB"
        let serial = d == .postgres ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY AUTOINCREMENT"
        return [[
            "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE programs (hash TEXT PRIMARY KEY, name TEXT NOT NULL, bytecode \(blob) NOT NULL, created_at BIGINT NOT NULL)",
            """
            CREATE TABLE flow_versions (tenant_id TEXT NOT NULL REFERENCES tenants(id), flow TEXT NOT NULL, version BIGINT NOT NULL,
              program_hash TEXT NOT NULL REFERENCES programs(hash), source TEXT NOT NULL, trigger_channel TEXT,
              keywords TEXT NOT NULL, published_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, flow, version))
            """,
            """
            CREATE TABLE contacts (tenant_id TEXT NOT NULL, channel TEXT NOT NULL, address TEXT NOT NULL, name TEXT,
              created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, channel, address))
            """,
            """
            CREATE TABLE conversations (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, channel TEXT NOT NULL,
              channel_kind TEXT NOT NULL, contact TEXT NOT NULL, flow TEXT NOT NULL, program_hash TEXT NOT NULL,
              continuation \(blob), status TEXT NOT NULL, wait_kind TEXT, wait_key TEXT, wake_at BIGINT, due_at BIGINT,
              step BIGINT NOT NULL DEFAULT 0, row_version BIGINT NOT NULL DEFAULT 0, failure TEXT,
              created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE UNIQUE INDEX conversations_open ON conversations (tenant_id, channel, contact) WHERE status IN ('active', 'waiting', 'handoff')",
            "CREATE INDEX conversations_due ON conversations (due_at) WHERE due_at IS NOT NULL",
            "CREATE INDEX conversations_wait_key ON conversations (tenant_id, wait_key) WHERE wait_key IS NOT NULL",
            "CREATE INDEX conversations_tenant ON conversations (tenant_id, status)",
            """
            CREATE TABLE events (seq \(serial), tenant_id TEXT NOT NULL, channel TEXT NOT NULL, channel_kind TEXT,
              contact TEXT, provider_id TEXT, conversation_id TEXT, kind TEXT NOT NULL, body TEXT NOT NULL,
              received_at BIGINT NOT NULL, processed_at BIGINT, disposition TEXT)
            """,
            "CREATE UNIQUE INDEX events_provider ON events (tenant_id, channel, provider_id) WHERE provider_id IS NOT NULL",
            "CREATE INDEX events_pending ON events (conversation_id, seq) WHERE processed_at IS NULL",
            "CREATE INDEX events_reroute ON events (seq) WHERE disposition = 'reroute' AND processed_at IS NULL",
            """
            CREATE TABLE outbox (id \(serial), tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
              idempotency_key TEXT NOT NULL UNIQUE, effect_id BIGINT NOT NULL, kind TEXT NOT NULL, action TEXT NOT NULL,
              payload TEXT NOT NULL, state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL,
              lease_until BIGINT, last_error TEXT, result TEXT, created_at BIGINT NOT NULL, completed_at BIGINT)
            """,
            "CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending'",
            "CREATE INDEX outbox_conversation ON outbox (conversation_id, id) WHERE state = 'pending'",
            """
            CREATE TABLE messages (id \(serial), tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
              direction TEXT NOT NULL, text TEXT NOT NULL, extra TEXT NOT NULL, at BIGINT NOT NULL)
            """,
            "CREATE INDEX messages_conversation ON messages (conversation_id, id)",
            """
            CREATE TABLE traces (id \(serial), tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, event TEXT NOT NULL,
              visited TEXT NOT NULL, effects TEXT NOT NULL, wait TEXT NOT NULL, status TEXT NOT NULL, at BIGINT NOT NULL)
            """,
            "CREATE INDEX traces_conversation ON traces (conversation_id, id)",
            "CREATE INDEX traces_at ON traces (at)",
        ], [
            """
            CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, role TEXT NOT NULL, prefix TEXT NOT NULL UNIQUE,
              hash TEXT NOT NULL, label TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT)
            """,
            """
            CREATE TABLE flow_drafts (tenant_id TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL, updated_at BIGINT NOT NULL,
              PRIMARY KEY (tenant_id, name))
            """,
            """
            CREATE TABLE channels (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
              callback_url TEXT, created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX channels_tenant ON channels (tenant_id)",
            "ALTER TABLE conversations ADD COLUMN agent TEXT",
            """
            CREATE TABLE audit_log (id \(serial), tenant_id TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
              subject TEXT NOT NULL, at BIGINT NOT NULL)
            """,
        ], [
            // A channel's secret (the api channel's callback signing secret, a connector's credentials), sealed by SecretBox.
            "ALTER TABLE channels ADD COLUMN secret TEXT",
        ], [
            // A channel's settings that are not secret (a WhatsApp channel's phone number id), as JSON.
            "ALTER TABLE channels ADD COLUMN config TEXT",
        ], [
            // What became of each message sent through a provider that reports it (WhatsApp: sent, delivered, read,
            // failed with a code). A status may arrive before the send's answer, so the conversation may be filled later.
            // `fallback` is what to send instead if the provider reports the window closed after all (JSON).
            """
            CREATE TABLE message_statuses (channel TEXT NOT NULL, provider_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
              conversation_id TEXT, status TEXT NOT NULL, error_code TEXT, updated_at BIGINT NOT NULL, fallback TEXT,
              PRIMARY KEY (channel, provider_id))
            """,
            "CREATE INDEX message_statuses_conversation ON message_statuses (conversation_id)",
        ], [
            // Turns run outside any transaction: a claimed conversation is leased until this instant (ms), so no
            // other worker runs it meanwhile, and a worker that died only delays it until then.
            "ALTER TABLE conversations ADD COLUMN lease_until BIGINT",
        ], [
            // A WhatsApp contact keyed by business-scoped user id may also have a phone number (`wa_id`); replies
            // address both, and the Cloud API prefers the phone.
            "ALTER TABLE contacts ADD COLUMN phone TEXT",
        ]]
    }

    /// The schema version this build writes.
    public static var schemaVersion: Int { migrations(.sqlite).count }

    public func migrate() async throws {
        let steps = SQLStore.migrations(driver.dialect)
        try await driver.transaction { db in
            if self.postgres {
                // Several processes may start at once: one migrates, the others wait and then find nothing to do.
                try await db.execute("SELECT pg_advisory_xact_lock(7346289)")
            }
            try await db.execute("CREATE TABLE IF NOT EXISTS flowline_schema (version BIGINT NOT NULL)")
            let current = Int(try await db.execute("SELECT MAX(version) AS v FROM flowline_schema").first?.int("v") ?? 0)
            guard current <= steps.count else {
                throw StoreError(.schemaTooNew, "the database has schema version \(current); this Flowline knows up to \(steps.count)")
            }
            for version in current..<steps.count {
                for statement in steps[version] { try await db.execute(statement) }
                try await db.execute("INSERT INTO flowline_schema (version) VALUES ($1)", .int(Int64(version + 1)))
                self.logger.info("migrated database schema", metadata: ["version": "\(version + 1)"])
            }
        }
    }

    // MARK: Tenants, programs, flows

    public func ensureTenant(id: String, name: String) async throws {
        try await driver.transaction { db in
            try await db.execute("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                                 .text(id), .text(name), .int(Timestamp(Date()).milliseconds))
        }
    }

    public func saveProgram(_ program: Program) async throws {
        try await driver.transaction { db in try await self.insertProgram(program, db) }
    }

    private func insertProgram(_ program: Program, _ db: any SQLExecutor) async throws {
        try await db.execute(
            "INSERT INTO programs (hash, name, bytecode, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
            .text(program.hash), .text(program.name), .blob(program.encoded()), .int(Timestamp(Date()).milliseconds))
    }

    public func program(hash: String) async throws -> Program? {
        try await driver.transaction { db in try await self.loadProgram(hash, db) }
    }

    private func loadProgram(_ hash: String, _ db: any SQLExecutor) async throws -> Program? {
        guard let bytes = try await db.execute("SELECT bytecode FROM programs WHERE hash = $1", .text(hash)).first?.blob("bytecode")
        else { return nil }
        return try Program(decoding: bytes)
    }

    public func publish(tenant: String, program: Program, source: String, at: Timestamp) async throws -> Int {
        try await driver.transaction { db in
            try await self.insertProgram(program, db)
            let last = try await db.execute(
                "SELECT MAX(version) AS v FROM flow_versions WHERE tenant_id = $1 AND flow = $2", .text(tenant), .text(program.name))
            let version = Int(last.first?.int("v") ?? 0) + 1
            let flow = PublishedFlow(tenant: tenant, version: version, program: program)
            try await db.execute(
                """
                INSERT INTO flow_versions (tenant_id, flow, version, program_hash, source, trigger_channel, keywords, published_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """,
                .text(tenant), .text(program.name), .int(Int64(version)), .text(program.hash), .text(source),
                flow.triggerChannel.map(SQLValue.text) ?? .null, .text(Value.list(flow.keywords.map(Value.string)).jsonText),
                .int(at.milliseconds))
            return version
        }
    }

    public func publishedFlows(tenant: String) async throws -> [PublishedFlow] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT f.flow, f.version, f.program_hash, f.trigger_channel, f.keywords FROM flow_versions f
                WHERE f.tenant_id = $1 AND f.version = (SELECT MAX(version) FROM flow_versions g
                  WHERE g.tenant_id = f.tenant_id AND g.flow = f.flow)
                ORDER BY f.flow
                """, .text(tenant)
            ).map { r in
                var keywords: [String] = []
                if case .list(let k)? = Value(json: r.text("keywords") ?? "[]") { keywords = k.map(\.text) }
                return PublishedFlow(tenant: tenant, name: r.text("flow") ?? "", version: Int(r.int("version") ?? 0),
                                     programHash: r.text("program_hash") ?? "", triggerChannel: r.text("trigger_channel"),
                                     keywords: keywords)
            }
        }
    }

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
    private struct ContactAddress: Hashable {
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

    private func ingest(_ batch: [IngestItem], now: Timestamp, _ db: any SQLExecutor) async throws -> [IngestResult] {
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

        // 2. Contacts, once each; the last name and phone given win.
        var names: [ContactAddress: String] = [:], phones: [ContactAddress: String] = [:]
        var contacts: [ContactAddress] = []
        for i in stored {
            let key = ContactAddress(batch[i].inbound)
            if !contacts.contains(key) { contacts.append(key) }
            if let name = batch[i].inbound.contactName { names[key] = name }
            if let phone = batch[i].inbound.contactPhone { phones[key] = phone }
        }
        for chunk in contacts.chunked(200) {
            try await valuesStatement(
                "INSERT INTO contacts (tenant_id, channel, address, name, phone, created_at)", tuple: "(?, ?, ?, ?, ?, ?)",
                rows: chunk.map { k in
                    [.text(k.tenant), .text(k.channel), .text(k.contact), names[k].map(SQLValue.text) ?? .null,
                     phones[k].map(SQLValue.text) ?? .null, ms]
                },
                suffix: " ON CONFLICT (tenant_id, channel, address) DO UPDATE SET name = COALESCE(EXCLUDED.name, contacts.name), phone = COALESCE(EXCLUDED.phone, contacts.phone)", db)
        }

        // 3. Open conversations of these contacts, locked in id order (so concurrent batches cannot deadlock).
        var open: [ContactAddress: String] = [:]
        for chunk in contacts.chunked(200) {
            let (tuples, binds) = ContactAddress.values(chunk)
            let rows = try await db.query(
                """
                SELECT id, tenant_id, channel, contact FROM conversations WHERE status IN ('active', 'waiting', 'handoff')
                AND (tenant_id, channel, contact) IN (VALUES \(tuples)) ORDER BY id\(forUpdate)
                """, binds)
            for r in rows {
                let key = ContactAddress(tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "", contact: r.text("contact") ?? "")
                open[key] = r.text("id")
            }
        }

        // 4. Decide each message in order: its contact's open conversation, a new one of its start flow, or none.
        var results: [IngestResult] = batch.map { _ in .duplicate }
        var started: [[SQLValue]] = []
        var startedIDs: Set<String> = []
        var attach: [(seq: Int64, conversation: String)] = []
        var unrouted: [Int64] = []
        var due: [String] = []
        for i in stored {
            let item = batch[i], key = ContactAddress(item.inbound), seq = seqs[i]!
            if let conversation = open[key] {
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
            tuple: "(?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)", rows: started, db)
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
        return results
    }

    /// SQLite reports a unique-index race as an error too; two new conversations for one contact, say. The
    /// transaction rolled back, so trying again sees the winner's row.
    private func retryingConflicts<T: Sendable>(_ body: () async throws -> T) async throws -> T {
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
    private func route(seq: Int64, _ inbound: Inbound, start: PublishedFlow?, newConversationID: String, now: Timestamp,
                       _ db: any SQLExecutor) async throws -> IngestResult {
        let open = try await db.execute(
            """
            SELECT id FROM conversations WHERE tenant_id = $1 AND channel = $2 AND contact = $3
            AND status IN ('active', 'waiting', 'handoff')\(forUpdate)
            """, .text(inbound.tenant), .text(inbound.channel), .text(inbound.contact))
        var conversation = open.first?.text("id")
        var started = false
        if conversation == nil, let start {
            try await db.execute(
                """
                INSERT INTO conversations (id, tenant_id, channel, channel_kind, contact, flow, program_hash, status, due_at,
                  created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $8, $8)
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

    private func markDue(_ conversation: String, now: Timestamp, _ db: any SQLExecutor) async throws {
        try await db.run(Hot.MarkDue.self, .text(conversation), .int(now.milliseconds))
    }

    public func post(_ body: EventBody, conversation: String, tenant: String, providerID: String?, now: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            let found = try await db.execute(
                "SELECT channel, contact, status FROM conversations WHERE id = $1 AND tenant_id = $2\(self.forUpdate)",
                .text(conversation), .text(tenant))
            guard let row = found.first, let channel = row.text("channel") else { return false }
            let status = ConversationStatus(rawValue: row.text("status") ?? "") ?? .failed
            switch body {
            case .retry:
                guard status == .failed else { throw EngineError(.conflict, "only a failed conversation can be retried") }
                let other = try await db.execute(
                    """
                    SELECT id FROM conversations WHERE tenant_id = $1 AND channel = $2 AND contact = $3 AND id <> $4
                    AND status IN ('active', 'waiting', 'handoff')
                    """, .text(tenant), .text(channel), .text(row.text("contact") ?? ""), .text(conversation))
                if !other.isEmpty { throw EngineError(.conflict, "the contact has another open conversation") }
            case .cancel:
                guard status != .ended else { throw EngineError(.conflict, "the conversation has already ended") }
            default:
                break
            }
            try await self.insertEvent(body, tenant: tenant, channel: channel, conversation: conversation, providerID: providerID, now: now, db)
            return true
        }
    }

    /// Inserts an event and marks its conversation due; false when `providerID` was seen before.
    @discardableResult
    private func insertEvent(_ body: EventBody, tenant: String, channel: String, conversation: String, providerID: String?,
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
                "SELECT tenant_id, channel, wait_kind, wait_key, step FROM conversations WHERE id = $1 AND status IN ('active', 'waiting', 'handoff')\(self.forUpdate)",
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

    public func reroute(sequence: Int64, inbound: Inbound, start: PublishedFlow?, newConversationID: String, now: Timestamp) async throws {
        _ = try await retryingConflicts {
            try await self.driver.transaction { db in
                let still = try await db.execute(
                    "SELECT seq FROM events WHERE seq = $1 AND disposition = 'reroute' AND processed_at IS NULL\(self.forUpdate)",
                    .int(sequence))
                guard !still.isEmpty else { return IngestResult.duplicate }
                return try await self.route(seq: sequence, inbound, start: start, newConversationID: newConversationID, now: now, db)
            }
        }
    }

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
        if Failpoint.isArmed {
            Failpoint.hit(.turnAfterRun, Array(Set(claimed.works.flatMap { w in w.events.isEmpty ? ["timer"] : w.events.map(\.body.kind) })))
        }
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
    private static func failed(_ record: ConversationRecord, _ reason: String) -> TurnMachine.Outcome {
        var failed = TurnMachine.Outcome(conversation: record)
        failed.conversation.status = .failed
        failed.conversation.failure = reason
        return failed
    }

    /// Leases up to `limit` due conversations and reads their events and contacts. A row whose saved state cannot be
    /// read is marked failed here, with the reason, and skipped: it must not stop the batch, nor every batch after it.
    private func claimTurns(limit: Int, now: Timestamp, lease: Int64) async throws -> (works: [TurnWork], poisoned: Int) {
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
                    UPDATE conversations SET status = 'failed', failure = $2, due_at = NULL, wake_at = NULL, wait_kind = NULL,
                      wait_key = NULL, lease_until = NULL, row_version = row_version + 1, updated_at = $3 WHERE id = $1
                    """, .text(record.id), .text(unreadable), .int(now.milliseconds))
            }
            guard !records.isEmpty else { return ([], poisoned) }
            try await db.query(
                "UPDATE conversations SET lease_until = $1 WHERE id IN (\(Self.placeholders(records.count, from: 2)))",
                [.int(now.milliseconds + lease * 1000)] + records.map { .text($0.id) })
            // Reads are per batch, not per conversation: a batch of turns costs a handful of round trips
            // (see docs/engine.md, "Batched turns").
            let events = try await self.pendingEvents(of: records, db)
            let known = try await self.contactDetails(of: records, db)
            let works = records.map { record in
                // `contact.phone`: the number stored with the contact (a WhatsApp contact keyed by its business-scoped
                // user id has one when the notification carried it), else the address unless it is such an id.
                let details = known[ContactAddress(record)]
                let phone = details?.phone ?? (Self.isUserID(record.contact) ? nil : record.contact)
                var contact: [String: Value] = ["id": .string(record.contact), "phone": phone.map(Value.string) ?? .null]
                if let name = details?.name { contact["name"] = .string(name) }
                return TurnWork(conversation: record, events: events[record.id] ?? [], contact: .map(contact))
            }
            return (works, poisoned)
        }
    }

    /// Writes turns' outcomes in one transaction. A conversation changed since its claim (its lease ran out and
    /// another worker ran it, or it was migrated) keeps that change and this outcome is dropped: one outcome lands
    /// per claim. An event that arrived while the turn ran leaves its conversation due.
    private func writeTurns(_ outcomes: [(work: TurnWork, outcome: TurnMachine.Outcome)], now: Timestamp) async throws {
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
    private func pendingEvents(of records: [ConversationRecord], _ db: any SQLExecutor) async throws -> [String: [PendingEvent]] {
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

    /// The names and phone numbers of these conversations' contacts, in one query.
    private func contactDetails(of records: [ConversationRecord], _ db: any SQLExecutor) async throws
        -> [ContactAddress: (name: String?, phone: String?)]
    {
        let (tuples, binds) = ContactAddress.values(Set(records.map(ContactAddress.init)))
        let rows = try await db.query(
            "SELECT tenant_id, channel, address, name, phone FROM contacts WHERE (tenant_id, channel, address) IN (VALUES \(tuples))", binds)
        var details: [ContactAddress: (name: String?, phone: String?)] = [:]
        for r in rows {
            let name = r.text("name"), phone = r.text("phone").flatMap { $0.isEmpty ? nil : $0 }
            guard name != nil || phone != nil else { continue }
            details[ContactAddress(tenant: r.text("tenant_id") ?? "", channel: r.text("channel") ?? "", contact: r.text("address") ?? "")] = (name, phone)
        }
        return details
    }

    /// A WhatsApp business-scoped user id (`US.13491208655302741918`): a country code, a period, letters and digits.
    static func isUserID(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts[0].count == 2 && parts[0].allSatisfy { $0.isASCII && $0.isUppercase }
            && parts.dropFirst().allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }
    }

    static func placeholders(_ count: Int, from first: Int = 1) -> String {
        (first..<first + count).map { "$\($0)" }.joined(separator: ", ")
    }

    /// What a batch of turns appends, gathered so each table gets one multi-row statement per batch.
    private struct TurnWrites {
        /// `Hot.UpdateConversation`'s parameters, one row per turn.
        var conversations: [[SQLValue]] = []
        var processed: [String: [Int64]] = [:]
        var rerouted: [Int64] = []
        var outbox: [[SQLValue]] = []
        var messages: [[SQLValue]] = []
        var traces: [[SQLValue]] = []
    }

    /// Queues a turn's writes (its conversation row is locked by this transaction until the batch commits).
    private func write(_ o: TurnMachine.Outcome, now: Timestamp, into writes: inout TurnWrites, _ db: any SQLExecutor) async throws {
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
        for t in o.traces {
            writes.traces.append([.text(c.tenant), .text(c.id), .text(t.event.jsonText), .text(Value.list(t.visited.map(Value.string)).jsonText),
                                  .text(t.effects.jsonText), .text(t.wait.jsonText), .text(t.status.rawValue), .int(t.at.milliseconds)])
        }
    }

    private func flush(_ w: TurnWrites, now: Timestamp, _ db: any SQLExecutor) async throws {
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
                             tuple: "(?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)", rows: w.outbox.map { $0 + [$0[7]] },
                             suffix: " ON CONFLICT (idempotency_key) DO NOTHING", db)
        try await insertRows("INSERT INTO messages (tenant_id, conversation_id, direction, text, extra, at)",
                             tuple: "(?, ?, ?, ?, ?, ?)", rows: w.messages, db)
        try await insertRows("INSERT INTO traces (tenant_id, conversation_id, event, visited, effects, wait, status, at)",
                             tuple: "(?, ?, ?, ?, ?, ?, ?, ?)", rows: w.traces, db)
    }

    /// A multi-row INSERT per chunk of rows; `tuple` spells one row with `?` for each bound value.
    private func insertRows(_ head: String, tuple: String, rows: [[SQLValue]], suffix: String = "", _ db: any SQLExecutor) async throws {
        for chunk in rows.chunked(200) { try await valuesStatement(head, tuple: tuple, rows: Array(chunk), suffix: suffix, db) }
    }

    /// One statement `head VALUES tuple, tuple, ... suffix` over all `rows` (empty: none); returns its rows.
    @discardableResult
    private func valuesStatement(_ head: String, tuple: String, rows: [[SQLValue]], suffix: String = "",
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
    private func conversationRow(_ r: SQLRow) -> (record: ConversationRecord, unreadable: String?) {
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

    private func conversationRecord(_ r: SQLRow) -> ConversationRecord { conversationRow(r).record }

    // MARK: Outbox

    public func claimDeliveries(limit: Int, now: Timestamp, lease: Int64) async throws -> [Delivery] {
        try await driver.transaction { db in
            try await db.execute(
                """
                UPDATE outbox SET lease_until = $2, attempts = attempts + 1 WHERE id IN (
                  SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= $1
                  AND (o.lease_until IS NULL OR o.lease_until <= $1)
                  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.conversation_id = o.conversation_id AND p.state = 'pending' AND p.id < o.id)
                  ORDER BY o.id LIMIT $3\(self.skipLocked))
                RETURNING id, tenant_id, conversation_id, idempotency_key, effect_id, kind, action, payload, attempts
                """, .int(now.milliseconds), .int(now.adding(seconds: lease).milliseconds), .int(Int64(limit))
            ).map { r in
                Delivery(
                    id: r.int("id") ?? 0, tenant: r.text("tenant_id") ?? "", conversation: r.text("conversation_id") ?? "",
                    entry: OutboxEntry(kind: OutboxEntry.Kind(rawValue: r.text("kind") ?? "") ?? .perform,
                                       idempotencyKey: r.text("idempotency_key") ?? "", effectID: UInt64(r.int("effect_id") ?? 0),
                                       action: r.text("action") ?? "", payload: Value(json: r.text("payload") ?? "null") ?? .null),
                    attempt: Int(r.int("attempts") ?? 1))
            }.sorted { $0.id < $1.id }
        }
    }

    public func finishDeliveries(_ outcomes: [(Delivery, DeliveryMachine.Action)], now: Timestamp) async throws {
        guard !outcomes.isEmpty else { return }
        try await driver.transaction { db in
            for (d, action) in outcomes { try await self.finish(d, action, now: now, db) }
        }
    }

    private func finish(_ d: Delivery, _ action: DeliveryMachine.Action, now: Timestamp, _ db: any SQLExecutor) async throws {
        do {
            switch action {
            case .complete(let result):
                let updated = try await db.run(Hot.CompleteDelivery.self, .int(d.id), .text(result.jsonText), .int(now.milliseconds))
                if !updated.isEmpty, d.entry.kind == .perform {
                    try await self.postResult(d, .success(result), now: now, db)
                }
            case .retry(let at, let error):
                try await db.execute(
                    "UPDATE outbox SET next_attempt_at = $2, lease_until = NULL, last_error = $3 WHERE id = $1 AND state = 'pending'",
                    .int(d.id), .int(at.milliseconds), .text(error))
            case .deadLetter(let error):
                let updated = try await db.execute(
                    """
                    UPDATE outbox SET state = 'dead', last_error = $2, completed_at = $3, lease_until = NULL
                    WHERE id = $1 AND state = 'pending' RETURNING id
                    """, .int(d.id), .text(error), .int(now.milliseconds))
                guard !updated.isEmpty else { return }
                if d.entry.kind == .perform {
                    // `error` is a ConnectorError's "code: message": the flow gets the connector's code as `error.reason`.
                    let code = error.firstIndex(of: ":").map { String(error[..<$0]) } ?? "dead_letter"
                    let message = error.firstIndex(of: ":").map { String(error[error.index(after: $0)...]).trimmingCharacters(in: .whitespaces) } ?? error
                    try await self.postResult(d, .failure(code: code, message: message), now: now, db)
                } else {
                    // A message that can never be delivered: the conversation stops, visibly, with the reason.
                    try await db.execute(
                        """
                        UPDATE conversations SET status = 'failed', failure = $3, due_at = NULL, wait_key = NULL, updated_at = $4
                        WHERE id = $1 AND tenant_id = $2 AND status IN ('active', 'waiting', 'handoff')
                        """,
                        .text(d.conversation), .text(d.tenant), .text("delivery failed: \(error)"), .int(now.milliseconds))
                }
            }
        }
    }

    private func postResult(_ d: Delivery, _ result: EffectResult, now: Timestamp, _ db: any SQLExecutor) async throws {
        let channel = try await db.execute("SELECT channel FROM conversations WHERE id = $1", .text(d.conversation)).first?.text("channel") ?? ""
        try await insertEvent(.effectResult(id: d.entry.effectID, result: result), tenant: d.tenant, channel: channel,
                              conversation: d.conversation, providerID: "effect:\(d.entry.idempotencyKey)", now: now, db)
    }

    // MARK: Reads

    public func conversation(id: String, tenant: String) async throws -> ConversationRecord? {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at, updated_at
                FROM conversations WHERE id = $1 AND tenant_id = $2
                """, .text(id), .text(tenant)
            ).first.map(self.conversationRecord)
        }
    }

    public func conversations(tenant: String, status: ConversationStatus?, contact: String?) async throws -> [ConversationRecord] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at, updated_at
                FROM conversations WHERE tenant_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR contact = $3)
                ORDER BY created_at, id
                """, .text(tenant), .text(status?.rawValue ?? ""), .text(contact ?? "")
            ).map(self.conversationRecord)
        }
    }

    /// What `GET /v1/conversations` filters on; nil matches everything.
    public struct ConversationFilter: Sendable, Hashable {
        public var status: ConversationStatus?
        public var contact: String?
        public var flow: String?
        public var channel: String?

        public init(status: ConversationStatus? = nil, contact: String? = nil, flow: String? = nil, channel: String? = nil) {
            self.status = status
            self.contact = contact
            self.flow = flow
            self.channel = channel
        }
    }

    /// One page of a tenant's conversations, oldest first, and how many match in all.
    public func conversations(tenant: String, filter: ConversationFilter, limit: Int, offset: Int) async throws
        -> (items: [ConversationRecord], total: Int)
    {
        let condition = """
            tenant_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR contact = $3) AND ($4 = '' OR flow = $4)
            AND ($5 = '' OR channel = $5)
            """
        let binds: [SQLValue] = [.text(tenant), .text(filter.status?.rawValue ?? ""), .text(filter.contact ?? ""), .text(filter.flow ?? ""),
                                 .text(filter.channel ?? "")]
        return try await driver.transaction { db in
            let total = try await db.query("SELECT COUNT(*) AS n FROM conversations WHERE \(condition)", binds).first?.int("n") ?? 0
            let items = try await db.query(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at, updated_at
                FROM conversations WHERE \(condition) ORDER BY created_at, id LIMIT $6 OFFSET $7
                """, binds + [.int(Int64(limit)), .int(Int64(offset))]
            ).map(self.conversationRecord)
            return (items, Int(total))
        }
    }

    public func messages(conversation: String, tenant: String) async throws -> [MessageRecord] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT direction, text, extra, at FROM messages WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY id",
                .text(conversation), .text(tenant)
            ).map { r in
                MessageRecord(direction: MessageRecord.Direction(rawValue: r.text("direction") ?? "") ?? .inbound, text: r.text("text") ?? "",
                              extra: Value(json: r.text("extra") ?? "null") ?? .null, at: Timestamp(milliseconds: r.int("at") ?? 0))
            }
        }
    }

    /// How far a message got, in order: a later report never takes a message back (`read` after `delivered` stays
    /// `read`), and `failed` wins.
    static let statusRank = ["accepted": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4]

    /// Notes a message the provider accepted (`providerID`, WhatsApp's `wamid`) for a conversation, with what to send
    /// instead should the provider fail it later for a reason a template gets around (`fallback`).
    public func recordSent(channel: String, providerID: String, tenant: String, conversation: String, at: Timestamp,
                           fallback: Value = .null) async throws {
        try await driver.transaction { db in
            try await db.execute(
                """
                INSERT INTO message_statuses (channel, provider_id, tenant_id, conversation_id, status, updated_at, fallback)
                VALUES ($1, $2, $3, $4, 'accepted', $5, $6)
                ON CONFLICT (channel, provider_id) DO UPDATE SET conversation_id = excluded.conversation_id, fallback = excluded.fallback
                """, .text(channel), .text(providerID), .text(tenant), .text(conversation), .int(at.milliseconds),
                fallback == .null ? .null : .text(fallback.jsonText))
        }
    }

    /// What a status report changed: the conversation when known, whether the status moved, and the message's
    /// fallback when it has one.
    public struct StatusChange: Sendable, Equatable {
        public var conversation: String?
        public var changed: Bool
        public var fallback: Value
        public init(conversation: String?, changed: Bool, fallback: Value = .null) {
            self.conversation = conversation
            self.changed = changed
            self.fallback = fallback
        }
    }

    /// Applies a provider's status report: a message only moves forward (`read` after `delivered` stays `read`).
    @discardableResult
    public func updateStatus(channel: String, providerID: String, tenant: String, status: String, errorCode: String?,
                             at: Timestamp) async throws -> StatusChange {
        guard let rank = Self.statusRank[status] else { return StatusChange(conversation: nil, changed: false) }
        return try await driver.transaction { db in
            let row = try await db.execute(
                "SELECT status, conversation_id, fallback FROM message_statuses WHERE channel = $1 AND provider_id = $2\(self.forUpdate)",
                .text(channel), .text(providerID)).first
            guard let row else {
                try await db.execute(
                    """
                    INSERT INTO message_statuses (channel, provider_id, tenant_id, status, error_code, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                    ON CONFLICT (channel, provider_id) DO NOTHING
                    """, .text(channel), .text(providerID), .text(tenant), .text(status), errorCode.map(SQLValue.text) ?? .null, .int(at.milliseconds))
                return StatusChange(conversation: nil, changed: true)
            }
            let conversation = row.text("conversation_id")
            guard rank > Self.statusRank[row.text("status") ?? "", default: 0] else { return StatusChange(conversation: conversation, changed: false) }
            try await db.execute("UPDATE message_statuses SET status = $3, error_code = $4, updated_at = $5 WHERE channel = $1 AND provider_id = $2",
                                 .text(channel), .text(providerID), .text(status), errorCode.map(SQLValue.text) ?? .null, .int(at.milliseconds))
            return StatusChange(conversation: conversation, changed: true, fallback: row.text("fallback").flatMap { Value(json: $0) } ?? .null)
        }
    }

    /// The reported statuses of a conversation's messages, oldest first.
    public func statuses(conversation: String, tenant: String) async throws -> [(messageID: String, status: String, errorCode: String?, at: Timestamp)] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT provider_id, status, error_code, updated_at FROM message_statuses WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY updated_at, provider_id",
                .text(conversation), .text(tenant)
            ).map { ($0.text("provider_id") ?? "", $0.text("status") ?? "", $0.text("error_code"), Timestamp(milliseconds: $0.int("updated_at") ?? 0)) }
        }
    }

    /// When the contact last wrote in this conversation; nil when never. WhatsApp's 24-hour window runs from it.
    public func lastInboundAt(conversation: String, tenant: String) async throws -> Timestamp? {
        try await driver.transaction { db in
            try await db.execute("SELECT MAX(at) AS at FROM messages WHERE conversation_id = $1 AND tenant_id = $2 AND direction = 'in'",
                                 .text(conversation), .text(tenant)).first?.int("at").map(Timestamp.init(milliseconds:))
        }
    }

    public func traces(conversation: String, tenant: String) async throws -> [TraceEntry] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT event, visited, effects, wait, status, at FROM traces WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY id",
                .text(conversation), .text(tenant)
            ).map { r in
                var visited: [String] = []
                if case .list(let v)? = Value(json: r.text("visited") ?? "[]") { visited = v.map(\.text) }
                return TraceEntry(event: Value(json: r.text("event") ?? "null") ?? .null, visited: visited,
                                  effects: Value(json: r.text("effects") ?? "null") ?? .null, wait: Value(json: r.text("wait") ?? "null") ?? .null,
                                  status: ConversationStatus(rawValue: r.text("status") ?? "") ?? .failed,
                                  at: Timestamp(milliseconds: r.int("at") ?? 0))
            }
        }
    }

    public func deliveries(tenant: String, state: DeliveryRecord.State?) async throws -> [DeliveryRecord] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, conversation_id, idempotency_key, action, state, attempts, last_error FROM outbox
                WHERE tenant_id = $1 AND ($2 = '' OR state = $2) ORDER BY id
                """, .text(tenant), .text(state?.rawValue ?? "")
            ).map { r in
                DeliveryRecord(id: r.int("id") ?? 0, conversation: r.text("conversation_id") ?? "", idempotencyKey: r.text("idempotency_key") ?? "",
                               action: r.text("action") ?? "", state: DeliveryRecord.State(rawValue: r.text("state") ?? "") ?? .pending,
                               attempts: Int(r.int("attempts") ?? 0), lastError: r.text("last_error"))
            }
        }
    }

    public func backlog(now: Timestamp) async throws -> (events: Int, deliveries: Int) {
        try await driver.transaction { db in
            let events = try await db.execute(
                """
                SELECT COUNT(*) AS n FROM events e WHERE e.processed_at IS NULL AND (e.disposition = 'reroute' OR EXISTS (
                  SELECT 1 FROM conversations c WHERE c.id = e.conversation_id AND c.status IN ('active', 'waiting', 'handoff')))
                """).first?.int("n") ?? 0
            let due = try await db.execute("SELECT COUNT(*) AS n FROM conversations WHERE due_at IS NOT NULL AND due_at <= $1",
                                           .int(now.milliseconds)).first?.int("n") ?? 0
            let deliveries = try await db.execute("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'").first?.int("n") ?? 0
            return (Int(events + due), Int(deliveries))
        }
    }

    /// Milliseconds from storing to processing each of a tenant's events received since `since`, for benchmarks.
    public func eventLatencies(tenant: String, receivedSince since: Timestamp) async throws -> [Double] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT processed_at - received_at AS ms FROM events
                WHERE tenant_id = $1 AND received_at >= $2 AND processed_at IS NOT NULL
                """, .text(tenant), .int(since.milliseconds)
            ).compactMap { $0.int("ms").map(Double.init) }
        }
    }

    /// Conversations with a turn due now (timers, debounced bursts) and dead-lettered deliveries, for the gauges.
    public func dueAndDead(now: Timestamp) async throws -> (due: Int, dead: Int) {
        try await driver.transaction { db in
            let due = try await db.execute("SELECT COUNT(*) AS n FROM conversations WHERE due_at IS NOT NULL AND due_at <= $1",
                                           .int(now.milliseconds)).first?.int("n") ?? 0
            let dead = try await db.execute("SELECT COUNT(*) AS n FROM outbox WHERE state = 'dead'").first?.int("n") ?? 0
            return (Int(due), Int(dead))
        }
    }

    public func move(conversation: ConversationRecord, to programHash: String, continuation: Continuation, now: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            let wait = continuation.wait
            var moved = conversation
            moved.continuation = continuation
            let rows = try await db.execute(
                """
                UPDATE conversations SET program_hash = $4, continuation = $5, wait_kind = $6, wait_key = $7, wake_at = $8,
                  due_at = CASE WHEN due_at IS NULL THEN $8 ELSE due_at END, row_version = row_version + 1, updated_at = $9
                WHERE id = $1 AND tenant_id = $2 AND row_version = $3 RETURNING id
                """,
                .text(conversation.id), .text(conversation.tenant), .int(conversation.version), .text(programHash),
                .blob(continuation.encoded()), wait.map { SQLValue.text($0.kind) } ?? .null, moved.waitKey.map(SQLValue.text) ?? .null,
                wait?.deadline.map { SQLValue.int($0.milliseconds) } ?? .null, .int(now.milliseconds))
            if !rows.isEmpty {
                try await db.execute(
                    """
                    INSERT INTO traces (tenant_id, conversation_id, event, visited, effects, wait, status, at)
                    VALUES ($1, $2, $3, '[]', '[]', $4, $5, $6)
                    """,
                    .text(conversation.tenant), .text(conversation.id),
                    .text(Value.map(["kind": "migrated", "from": .string(conversation.programHash), "to": .string(programHash)]).jsonText),
                    .text(wait?.value.jsonText ?? "null"), .text(conversation.status.rawValue), .int(now.milliseconds))
            }
            return !rows.isEmpty
        }
    }

    // MARK: Server tables (schema 2): API keys, drafts, channels, audit

    /// A stored API key: only its prefix and hash are kept.
    public struct APIKeyRecord: Sendable, Hashable {
        public var id: String
        public var tenant: String
        public var role: String
        public var prefix: String
        public var hash: String
        public var label: String
        public var createdAt: Timestamp
        public var revoked: Bool

        public init(id: String, tenant: String, role: String, prefix: String, hash: String, label: String, createdAt: Timestamp,
                    revoked: Bool) {
            self.id = id
            self.tenant = tenant
            self.role = role
            self.prefix = prefix
            self.hash = hash
            self.label = label
            self.createdAt = createdAt
            self.revoked = revoked
        }
    }

    public func insertAPIKey(_ k: APIKeyRecord) async throws {
        try await driver.transaction { db in
            try await db.execute(
                "INSERT INTO api_keys (id, tenant_id, role, prefix, hash, label, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                .text(k.id), .text(k.tenant), .text(k.role), .text(k.prefix), .text(k.hash), .text(k.label), .int(k.createdAt.milliseconds))
        }
    }

    private func apiKey(_ r: SQLRow) -> APIKeyRecord {
        APIKeyRecord(id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", role: r.text("role") ?? "", prefix: r.text("prefix") ?? "",
                     hash: r.text("hash") ?? "", label: r.text("label") ?? "", createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0),
                     revoked: r.int("revoked_at") != nil)
    }

    /// The live key with this prefix, if any. Read on every request, so cached for two seconds; a key revoked
    /// through this store is dropped at once, one revoked by another process within the two seconds.
    public func apiKey(prefix: String) async throws -> APIKeyRecord? {
        try await keyCache.value(prefix) {
            try await driver.transaction { db in
                try await db.execute("SELECT * FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL", .text(prefix)).first.map(self.apiKey)
            }
        }
    }

    public func apiKeys(tenant: String, limit: Int = Int(Int32.max), offset: Int = 0) async throws -> (items: [APIKeyRecord], total: Int) {
        try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id = $1", .text(tenant)).first?.int("n") ?? 0
            let items = try await db.execute("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
                                             .text(tenant), .int(Int64(limit)), .int(Int64(offset))).map(self.apiKey)
            return (items, Int(total))
        }
    }

    /// Revokes a tenant's key; false when the tenant has no such key.
    public func revokeAPIKey(id: String, tenant: String, at: Timestamp) async throws -> Bool {
        // Dropped before and after: a request racing the UPDATE could otherwise cache the key again.
        keyCache.removeAll { $0.id == id }
        defer { keyCache.removeAll { $0.id == id } }
        return try await driver.transaction { db in
            !(try await db.execute("UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL RETURNING id",
                                   .text(id), .text(tenant), .int(at.milliseconds))).isEmpty
        }
    }

    public func saveDraft(tenant: String, name: String, source: String, at: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            let existed = !(try await db.execute("SELECT name FROM flow_drafts WHERE tenant_id = $1 AND name = $2\(self.forUpdate)",
                                                 .text(tenant), .text(name))).isEmpty
            try await db.execute(
                """
                INSERT INTO flow_drafts (tenant_id, name, source, updated_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (tenant_id, name) DO UPDATE SET source = EXCLUDED.source, updated_at = EXCLUDED.updated_at
                """, .text(tenant), .text(name), .text(source), .int(at.milliseconds))
            return !existed
        }
    }

    public func draft(tenant: String, name: String) async throws -> String? {
        try await driver.transaction { db in
            try await db.execute("SELECT source FROM flow_drafts WHERE tenant_id = $1 AND name = $2", .text(tenant), .text(name)).first?.text("source")
        }
    }

    /// One page of a tenant's flow names (drafted or published), in name order, and how many there are.
    public func flowNames(tenant: String, limit: Int, offset: Int) async throws -> (items: [String], total: Int) {
        let names = "SELECT name FROM flow_drafts WHERE tenant_id = $1 UNION SELECT flow AS name FROM flow_versions WHERE tenant_id = $1"
        return try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM (\(names)) AS all_names", .text(tenant)).first?.int("n") ?? 0
            let items = try await db.execute("SELECT name FROM (\(names)) AS all_names ORDER BY name LIMIT $2 OFFSET $3",
                                             .text(tenant), .int(Int64(limit)), .int(Int64(offset))).compactMap { $0.text("name") }
            return (items, Int(total))
        }
    }

    /// Every published version of a flow: number, program hash, time.
    public func versions(tenant: String, flow: String) async throws -> [(version: Int, programHash: String, source: String, at: Timestamp)] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT version, program_hash, source, published_at FROM flow_versions WHERE tenant_id = $1 AND flow = $2 ORDER BY version",
                .text(tenant), .text(flow)
            ).map { r in
                (Int(r.int("version") ?? 0), r.text("program_hash") ?? "", r.text("source") ?? "", Timestamp(milliseconds: r.int("published_at") ?? 0))
            }
        }
    }

    /// A channel of a tenant.
    public struct ChannelRecord: Sendable, Hashable {
        public var id: String
        public var tenant: String
        public var kind: String
        public var name: String
        public var callbackURL: String?
        public var createdAt: Timestamp
        /// The channel's secret as sealed by `SecretBox` (never the plain secret).
        public var sealedSecret: String?
        /// Settings that are not secret (`phone_number_id` of a WhatsApp channel).
        public var config: Value

        public init(id: String, tenant: String, kind: String, name: String, callbackURL: String?, createdAt: Timestamp,
                    sealedSecret: String? = nil, config: Value = [:]) {
            self.config = config
            self.id = id
            self.tenant = tenant
            self.kind = kind
            self.name = name
            self.callbackURL = callbackURL
            self.createdAt = createdAt
            self.sealedSecret = sealedSecret
        }

        /// What a sealed channel secret is bound to: a ciphertext moved to another channel or tenant does not open.
        public var secretContext: String { "channel:\(tenant):\(id)" }
    }

    public func insertChannel(_ c: ChannelRecord) async throws {
        try await driver.transaction { db in
            try await db.execute(
                "INSERT INTO channels (id, tenant_id, kind, name, callback_url, created_at, secret, config) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                .text(c.id), .text(c.tenant), .text(c.kind), .text(c.name), c.callbackURL.map(SQLValue.text) ?? .null, .int(c.createdAt.milliseconds),
                c.sealedSecret.map(SQLValue.text) ?? .null, .text(c.config.jsonText))
        }
    }

    private func channel(_ r: SQLRow) -> ChannelRecord {
        ChannelRecord(id: r.text("id") ?? "", tenant: r.text("tenant_id") ?? "", kind: r.text("kind") ?? "", name: r.text("name") ?? "",
                      callbackURL: r.text("callback_url"), createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0),
                      sealedSecret: r.text("secret"), config: r.text("config").flatMap { Value(json: $0) } ?? [:])
    }

    /// A tenant's channel; cached for two seconds (read on every inbound message and every reply).
    public func channel(id: String, tenant: String) async throws -> ChannelRecord? {
        try await channelCache.value(ChannelKey(id: id, tenant: tenant)) {
            try await driver.transaction { db in
                try await db.execute("SELECT * FROM channels WHERE id = $1 AND tenant_id = $2", .text(id), .text(tenant)).first.map(self.channel)
            }
        }
    }

    /// A channel by id alone, for provider webhooks (`/webhooks/whatsapp/{id}`), which carry no API key: the
    /// channel names its tenant, and the request must prove itself with the channel's secret.
    public func channel(id: String) async throws -> ChannelRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT * FROM channels WHERE id = $1", .text(id)).first.map(self.channel)
        }
    }

    /// The tenant's newest channel of `kind` (`stripe`, `email`, `ai`, `n8n`): the account a connector action uses.
    /// Newest, so creating a channel rotates credentials while the old one still verifies late webhooks.
    public func newestChannel(tenant: String, kind: String) async throws -> ChannelRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT * FROM channels WHERE tenant_id = $1 AND kind = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
                                 .text(tenant), .text(kind)).first.map(self.channel)
        }
    }

    struct ChannelKey: Hashable, Sendable {
        var id, tenant: String
    }

    public func channels(tenant: String, limit: Int = Int(Int32.max), offset: Int = 0) async throws -> (items: [ChannelRecord], total: Int) {
        try await driver.transaction { db in
            let total = try await db.execute("SELECT COUNT(*) AS n FROM channels WHERE tenant_id = $1", .text(tenant)).first?.int("n") ?? 0
            let items = try await db.execute("SELECT * FROM channels WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2 OFFSET $3",
                                             .text(tenant), .int(Int64(limit)), .int(Int64(offset))).map(self.channel)
            return (items, Int(total))
        }
    }

    public func audit(tenant: String, actor: String, action: String, subject: String, at: Timestamp) async throws {
        try await driver.transaction { db in
            try await db.execute("INSERT INTO audit_log (tenant_id, actor, action, subject, at) VALUES ($1, $2, $3, $4, $5)",
                                 .text(tenant), .text(actor), .text(action), .text(subject), .int(at.milliseconds))
        }
    }

    public func auditLog(tenant: String) async throws -> [(actor: String, action: String, subject: String, at: Timestamp)] {
        try await driver.transaction { db in
            try await db.execute("SELECT actor, action, subject, at FROM audit_log WHERE tenant_id = $1 ORDER BY id", .text(tenant)).map { r in
                (r.text("actor") ?? "", r.text("action") ?? "", r.text("subject") ?? "", Timestamp(milliseconds: r.int("at") ?? 0))
            }
        }
    }

    /// A conversation in the handoff inbox.
    public struct InboxEntry: Sendable, Hashable {
        public var conversation: ConversationRecord
        public var queue: String
        /// The key id of the agent who claimed it.
        public var agent: String?
    }

    /// Conversations waiting for a human, oldest first, optionally of one queue.
    public func inbox(tenant: String, queue: String?) async throws -> [InboxEntry] {
        try await driver.transaction { db in
            try await db.execute(
                """
                SELECT id, tenant_id, channel, contact, flow, program_hash, continuation, status, failure, row_version, created_at,
                  updated_at, agent FROM conversations WHERE tenant_id = $1 AND status = 'handoff' ORDER BY updated_at, id
                """, .text(tenant)
            ).compactMap { r in
                let c = self.conversationRecord(r)
                guard case .handoff(let q)? = c.continuation?.wait, queue == nil || q == queue else { return nil }
                return InboxEntry(conversation: c, queue: q, agent: r.text("agent"))
            }
        }
    }

    /// Claims a handed-off conversation for an agent; false when it is not in the inbox or another agent has it.
    public func claim(conversation: String, tenant: String, agent: String) async throws -> Bool {
        try await driver.transaction { db in
            !(try await db.execute(
                """
                UPDATE conversations SET agent = $3 WHERE id = $1 AND tenant_id = $2 AND status = 'handoff'
                AND (agent IS NULL OR agent = $3) RETURNING id
                """, .text(conversation), .text(tenant), .text(agent))).isEmpty
        }
    }

    /// An agent's message: kept in the history and sent through the outbox like the flow's own.
    public func agentMessage(conversation: String, tenant: String, text: String, agent: String, now: Timestamp) async throws -> Bool {
        try await driver.transaction { db in
            guard let row = try await db.execute(
                "SELECT channel, contact FROM conversations WHERE id = $1 AND tenant_id = $2 AND status = 'handoff'\(self.forUpdate)",
                .text(conversation), .text(tenant)).first else { return false }
            let message: Value = ["text": .string(text)]
            try await db.run(Hot.InsertMessage.self, .text(tenant), .text(conversation), .text("out"), .text(text),
                             .text(Value.map(["text": .string(text), "agent": .string(agent)]).jsonText), .int(now.milliseconds))
            try await db.run(Hot.InsertOutbox.self, .text(tenant), .text(conversation), .text("\(conversation):agent:\(UUID().uuidString.lowercased())"),
                             .int(0), .text("send"), .text("channel.send"),
                             .text(Value.map(["channel": .string(row.text("channel") ?? ""), "contact": .string(row.text("contact") ?? ""),
                                              "message": message]).jsonText), .int(now.milliseconds))
            return true
        }
    }

    /// Changes in a tenant's conversations after two cursors: new messages (by message id) and turns (by trace id),
    /// for the live event stream. Works across processes: it reads the database, not memory.
    public func changes(tenant: String, afterMessage: Int64, afterTrace: Int64, limit: Int)
        async throws -> (messages: [(id: Int64, conversation: String, message: MessageRecord)], turns: [(id: Int64, conversation: String, status: String, wait: Value)])
    {
        try await driver.transaction { db in
            let messages = try await db.execute(
                """
                SELECT id, conversation_id, direction, text, extra, at FROM messages WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3
                """, .text(tenant), .int(afterMessage), .int(Int64(limit))
            ).map { r in
                (r.int("id") ?? 0, r.text("conversation_id") ?? "",
                 MessageRecord(direction: MessageRecord.Direction(rawValue: r.text("direction") ?? "") ?? .inbound, text: r.text("text") ?? "",
                               extra: Value(json: r.text("extra") ?? "null") ?? .null, at: Timestamp(milliseconds: r.int("at") ?? 0)))
            }
            let turns = try await db.execute(
                "SELECT id, conversation_id, status, wait FROM traces WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                .text(tenant), .int(afterTrace), .int(Int64(limit))
            ).map { r in
                (r.int("id") ?? 0, r.text("conversation_id") ?? "", r.text("status") ?? "", Value(json: r.text("wait") ?? "null") ?? .null)
            }
            return (messages, turns)
        }
    }

    /// The newest message and trace ids of a tenant: where a new event stream starts.
    public func latestCursors(tenant: String) async throws -> (message: Int64, trace: Int64) {
        try await driver.transaction { db in
            let m = try await db.execute("SELECT MAX(id) AS id FROM messages WHERE tenant_id = $1", .text(tenant)).first?.int("id") ?? 0
            let t = try await db.execute("SELECT MAX(id) AS id FROM traces WHERE tenant_id = $1", .text(tenant)).first?.int("id") ?? 0
            return (m, t)
        }
    }

    /// Whether the database answers: `GET /ready`.
    public func ping() async throws {
        try await driver.transaction { db in _ = try await db.execute("SELECT 1 AS ok") }
    }

    public func tenantExists(_ id: String) async throws -> Bool {
        try await driver.transaction { db in !(try await db.execute("SELECT id FROM tenants WHERE id = $1", .text(id))).isEmpty }
    }

    /// Records a schema version as applied, to test how a newer database is refused.
    public func markSchemaForTesting(version: Int) async throws {
        try await driver.transaction { db in
            try await db.execute("INSERT INTO flowline_schema (version) VALUES ($1)", .int(Int64(version)))
        }
    }

    public func purgeTraces(before: Timestamp) async throws -> Int {
        try await driver.transaction { db in
            try await db.execute("DELETE FROM traces WHERE at < $1 RETURNING id", .int(before.milliseconds)).count
        }
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
