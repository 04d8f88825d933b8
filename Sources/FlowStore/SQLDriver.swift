import ServiceLifecycle
import Foundation

/// A value bound to or read from SQL: the few column types the schema uses.
public enum SQLValue: Sendable, Hashable {
    case null
    case int(Int64)
    case text(String)
    case blob([UInt8])
}

/// One result row, by column name.
public struct SQLRow: Sendable {
    var columns: [String: SQLValue]

    func value(_ name: String) -> SQLValue { columns[name] ?? .null }

    func int(_ name: String) -> Int64? {
        switch value(name) {
        case .int(let i): i
        case .text(let s): Int64(s)
        default: nil
        }
    }

    func text(_ name: String) -> String? {
        switch value(name) {
        case .text(let s): s
        case .int(let i): String(i)
        case .blob(let b): String(decoding: b, as: UTF8.self)
        case .null: nil
        }
    }

    func blob(_ name: String) -> [UInt8]? {
        switch value(name) {
        case .blob(let b): b
        case .text(let s): Array(s.utf8)
        default: nil
        }
    }
}

/// Which SQL the store writes: the schema and queries are the same but for a few dialect details.
public enum SQLDialect: Sendable {
    case postgres, sqlite
}

/// Runs statements inside one transaction.
protocol SQLExecutor: Sendable {
    /// Runs `sql` with `$1`, `$2`... bound to `binds`.
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow]
    /// Runs a hot-path statement: prepared once per connection where the database supports it.
    func run<S: HotStatement>(_ statement: S.Type, _ binds: [SQLValue]) async throws -> [SQLRow]
}

/// A database connection pool (PostgreSQL) or connection (SQLite) that runs transactions.
protocol SQLDriver: Sendable {
    var dialect: SQLDialect { get }
    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    func transaction<T: Sendable>(_ body: @Sendable (any SQLExecutor) async throws -> T) async throws -> T
    func close() async
    /// What the caller must run for the driver to work, when it runs nothing of its own (`SQLStore.Lifecycle.service`).
    var service: (any Service)? { get }
}

extension SQLExecutor {
    /// Runs `body` between `begin` and `COMMIT`, rolling back when it throws: the one transaction shape of both drivers.
    func transaction<T>(begin: String, _ body: (any SQLExecutor) async throws -> T) async throws -> T {
        _ = try await query(begin, [])
        do {
            let result = try await body(self)
            _ = try await query("COMMIT", [])
            return result
        } catch {
            // Not cancellable: SQLiteNIO refuses work from a cancelled task, and a ROLLBACK refused would leave the
            // connection inside this transaction, so that every later BEGIN fails (a worker told to stop mid-turn).
            let executor = self
            _ = try? await Task { try await executor.query("ROLLBACK", []) }.value
            throw error
        }
    }

    func run<S: HotStatement>(_ statement: S.Type, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await query(S.sql, binds)
    }

    @discardableResult
    func run<S: HotStatement>(_ statement: S.Type, _ binds: SQLValue...) async throws -> [SQLRow] {
        try await run(statement, binds)
    }

    @discardableResult
    func execute(_ sql: String, _ binds: SQLValue...) async throws -> [SQLRow] { try await query(sql, binds) }
}

extension SQLValue {
    /// Text as both databases can keep it whole: PostgreSQL refuses U+0000 in text and SQLite's reader stops at it
    /// (a message id `"a\u{0}b"` would read back as `"a"` and collide with another). The API refuses NUL at its
    /// boundary; anything that still carries one (a provider's payload, a connector's answer) is stored with
    /// U+FFFD in its place, the same way every time, so de-duplication still holds.
    static func storable(_ s: String) -> String {
        guard s.utf8.contains(0) else { return s }
        var out = String.UnicodeScalarView()
        for c in s.unicodeScalars { out.append(c == "\u{0}" ? "\u{FFFD}" : c) }
        return String(out)
    }
}
