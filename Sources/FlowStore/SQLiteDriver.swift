import ServiceLifecycle
import Logging
import NIOCore
import NIOConcurrencyHelpers
import SQLiteNIO

/// The embedded database: one SQLite connection in WAL mode, transactions run one at a time (SQLite has a
/// single writer; `BEGIN IMMEDIATE` takes the write lock up front, so a transaction never fails halfway on it).
final class SQLiteDriver: SQLDriver, @unchecked Sendable {
    let dialect = SQLDialect.sqlite
    private let connection: SQLiteConnection
    private let gate = AsyncGate()

    init(path: String, logger: Logger) async throws {
        connection = try await SQLiteConnection.open(storage: path == ":memory:" ? .memory : .file(path: path), logger: logger)
        let executor = SQLiteExecutor(connection: connection)
        _ = try await executor.query("PRAGMA journal_mode=WAL", [])
        _ = try await executor.query("PRAGMA synchronous=FULL", [])
        _ = try await executor.query("PRAGMA busy_timeout=10000", [])
        _ = try await executor.query("PRAGMA foreign_keys=ON", [])
    }

    func transaction<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await gate.run {
            try await SQLiteExecutor(connection: connection).transaction(begin: "BEGIN IMMEDIATE", body)
        }
    }

    private let closed = NIOLockedValueBox(false)

    var service: (any Service)? { nil }

    func close() async {
        guard closed.withLockedValue({ c in defer { c = true }; return !c }) else { return }
        try? await connection.close()
    }

    deinit {
        // A store dropped without close() (a test that threw, say) must not leak its file handle.
        if closed.withLockedValue({ !$0 }) { try? connection.close().wait() }
    }
}

/// A FIFO async lock: one transaction on the connection at a time, across suspension points.
actor AsyncGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        }
        busy = true
        defer {
            if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}

struct SQLiteExecutor: SQLExecutor {
    let connection: SQLiteConnection

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        // `$1` placeholders become SQLite's numbered `?1`.
        let translated = sql.replacingOccurrences(of: "$", with: "?")
        let data: [SQLiteData] = binds.map {
            switch $0 {
            case .null: .null
            case .int(let i): .integer(SQLiteInt64(i))
            case .text(let s): .text(SQLValue.storable(s))
            case .blob(let b): .blob(ByteBuffer(bytes: b))
            }
        }
        let collector = RowCollector()
        try await connection.query(translated, data) { row in collector.append(row) }
        return collector.rows.map { row in
            var columns: [String: SQLValue] = [:]
            for c in row.columns {
                switch c.data {
                case .integer(let i): columns[c.name] = .int(Int64(i))
                case .float(let d): columns[c.name] = .int(Int64(d))
                case .text(let s): columns[c.name] = .text(s)
                case .blob(var b): columns[c.name] = .blob(b.readBytes(length: b.readableBytes) ?? [])
                case .null: columns[c.name] = .null
                }
            }
            return SQLRow(columns: columns)
        }
    }
}

/// Rows gathered from SQLiteNIO's row callback, which runs on its thread pool.
final class RowCollector: @unchecked Sendable {
    private let lock = NIOLock()
    private var storage: [SQLiteRow] = []
    func append(_ r: SQLiteRow) { lock.withLock { storage.append(r) } }
    var rows: [SQLiteRow] { lock.withLock { storage } }
}
