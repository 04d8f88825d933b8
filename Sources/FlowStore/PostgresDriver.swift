import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle

/// PostgreSQL through a `PostgresClient` pool. The client is a service: a server runs it in its service group
/// (`service`), stopped after everything that queries; a one-shot command or a test lets the driver run it until
/// `close()`.
final class PostgresDriver: SQLDriver, @unchecked Sendable {
    let dialect = SQLDialect.postgres
    private let client: PostgresClient
    private let runTask: Task<Void, Never>?
    private let logger: Logger

    var service: (any Service)? { runTask == nil ? client : nil }

    init(url: String, logger: Logger, runsItself: Bool) throws {
        guard let c = URLComponents(string: url), let host = c.host, let user = c.user else {
            throw StoreError(.configuration, "a PostgreSQL URL looks like postgres://user:password@host:5432/database")
        }
        var config = PostgresClient.Configuration(
            host: host, port: c.port ?? 5432, username: user, password: c.password,
            database: c.path.isEmpty ? nil : String(c.path.dropFirst()), tls: .disable)
        config.options.maximumConnections = 16
        client = PostgresClient(configuration: config, backgroundLogger: logger)
        self.logger = logger
        let client = self.client
        runTask = runsItself ? Task { await client.run() } : nil
    }

    func transaction<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            try await PostgresExecutor(connection: connection, logger: logger).transaction(begin: "BEGIN", body)
        }
    }

    func close() async {
        runTask?.cancel()
        _ = await runTask?.value
    }
}

extension SQLStore {
    /// Creates an empty database on the server of `url` (for tests and benchmarks, which each want their own) and
    /// returns its URL.
    public static func createPostgresDatabase(nextTo url: String, prefix: String = "t_") async throws -> String {
        guard var c = URLComponents(string: url), let host = c.host, let user = c.user else {
            throw StoreError(.configuration, "a PostgreSQL URL looks like postgres://user:password@host:5432/database")
        }
        let name = prefix + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        var config = PostgresClient.Configuration(host: host, port: c.port ?? 5432, username: user, password: c.password,
                                                  database: c.path.isEmpty ? nil : String(c.path.dropFirst()), tls: .disable)
        config.options.maximumConnections = 1
        let client = PostgresClient(configuration: config)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        }
        c.path = "/" + name
        return c.string!
    }
}

struct PostgresExecutor: SQLExecutor {
    let connection: PostgresConnection
    let logger: Logger

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        let rows: PostgresRowSequence = try await connection.query(
            PostgresQuery(unsafeSQL: sql, binds: PostgresExecutor.bindings(binds)), logger: logger)
        var out: [SQLRow] = []
        for try await row in rows { out.append(try PostgresExecutor.decode(row)) }
        return out
    }

    func run<S: HotStatement>(_ statement: S.Type, _ binds: [SQLValue]) async throws -> [SQLRow] {
        var out: [SQLRow] = []
        for try await row in try await connection.execute(Prepared<S>(binds: binds), logger: logger) { out.append(row) }
        return out
    }

    static func bindings(_ binds: [SQLValue]) -> PostgresBindings {
        var bindings = PostgresBindings(capacity: binds.count)
        for b in binds {
            switch b {
            case .null: bindings.appendNull()
            case .int(let i): bindings.append(i)
            case .text(let s): bindings.append(SQLValue.storable(s))
            case .blob(let bytes): bindings.append(ByteBuffer(bytes: bytes))
            }
        }
        return bindings
    }

    static func decode(_ row: PostgresRow) throws -> SQLRow {
        var columns: [String: SQLValue] = [:]
        for cell in row {
            guard var buffer = cell.bytes else {
                columns[cell.columnName] = .null
                continue
            }
            switch cell.dataType {
            case .int8: columns[cell.columnName] = .int(try cell.decode(Int64.self))
            case .int4: columns[cell.columnName] = .int(Int64(try cell.decode(Int32.self)))
            case .int2: columns[cell.columnName] = .int(Int64(try cell.decode(Int16.self)))
            case .bytea: columns[cell.columnName] = .blob(buffer.readBytes(length: buffer.readableBytes) ?? [])
            case .bool: columns[cell.columnName] = .int(try cell.decode(Bool.self) ? 1 : 0)
            default: columns[cell.columnName] = .text(try cell.decode(String.self))
            }
        }
        return SQLRow(columns: columns)
    }
}

/// A hot statement as PostgresNIO prepares it: once per connection, under the statement type's name.
struct Prepared<S: HotStatement>: PostgresPreparedStatement {
    typealias Row = SQLRow
    static var sql: String { S.sql }
    static var name: String { "flowline_" + String(describing: S.self) }
    let binds: [SQLValue]

    func makeBindings() throws -> PostgresBindings { PostgresExecutor.bindings(binds) }
    func decodeRow(_ row: PostgresRow) throws -> SQLRow { try PostgresExecutor.decode(row) }
}
