import FlowEngine
import FlowVM
import Foundation
import Logging
import ServiceLifecycle

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
/// Every read of a tenant's data is scoped by `tenant_id`; every value is a bound parameter. One file per concern:
/// `+Schema` (migrations), `+Flows`, `+Ingest`, `+Turns`, `+Outbox`, `+Reads` and `+Admin` (keys, drafts,
/// channels, audit, inbox, the event stream).
public final class SQLStore: Store, @unchecked Sendable {
    let driver: any SQLDriver
    let logger: Logger
    let keyCache = ExpiringCache<String, APIKeyRecord>(lifetime: .seconds(2))
    let channelCache = ExpiringCache<ChannelKey, ChannelRecord>(lifetime: .seconds(2))

    init(driver: any SQLDriver, logger: Logger) {
        self.driver = driver
        self.logger = logger
    }

    /// Who runs what the store needs running (PostgreSQL's connection pool).
    public enum Lifecycle: Sendable {
        /// The store runs it until `close()`: for commands and tests.
        case standalone
        /// The caller runs `service` in its service group, where it stops after the services that query it.
        case service
    }

    /// Opens `sqlite:PATH` (or `sqlite::memory:`) or `postgres://user:password@host:port/database`.
    public static func open(_ url: String, logger: Logger = Logger(label: "flowline.store"), lifecycle: Lifecycle = .standalone) async throws -> SQLStore {
        if url.hasPrefix("sqlite:") {
            return SQLStore(driver: try await SQLiteDriver(path: String(url.dropFirst("sqlite:".count)), logger: logger), logger: logger)
        }
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return SQLStore(driver: try PostgresDriver(url: url, logger: logger, runsItself: lifecycle == .standalone), logger: logger)
        }
        throw StoreError(.configuration, "database must be sqlite:PATH or postgres://...")
    }

    public func close() async { await driver.close() }

    /// What a `.service` store needs run (PostgreSQL's pool); nil when it needs nothing or runs it itself.
    public var service: (any Service)? { driver.service }

    var postgres: Bool { driver.dialect == .postgres }
    /// Row locks where the database has them; SQLite's single writer makes them unnecessary.
    var skipLocked: String { postgres ? " FOR UPDATE SKIP LOCKED" : "" }
    var forUpdate: String { postgres ? " FOR UPDATE" : "" }

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

/// Status values as the queries spell them, made from the enums so each is written in one place. (Migrations keep
/// their own text: what a past schema version created must not change.)
enum SQLStatus {
    static func literal(_ s: ConversationStatus) -> String { "'\(s.rawValue)'" }
    static func literal(_ s: DeliveryRecord.State) -> String { "'\(s.rawValue)'" }
    /// The statuses that hold a contact's slot (`ConversationStatus.isOpen`), as a parenthesised list.
    static let open = "(" + ConversationStatus.allCases.filter(\.isOpen).map(literal).joined(separator: ", ") + ")"
    static let active = literal(.active), handoff = literal(.handoff), failed = literal(.failed), ended = literal(.ended)
    static let pending = literal(DeliveryRecord.State.pending), done = literal(DeliveryRecord.State.done), dead = literal(DeliveryRecord.State.dead)
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}

extension SQLStore {
    // The records' older names, from when they were the SQL store's own.
    public typealias APIKeyRecord = FlowEngine.APIKeyRecord
    public typealias ChannelRecord = FlowEngine.ChannelRecord
    public typealias InboxEntry = FlowEngine.InboxEntry
    public typealias ConversationFilter = FlowEngine.ConversationFilter
}

extension SQLStore: FlowRecords, ConversationRecords, TenantRecords, StoreHealth {}
