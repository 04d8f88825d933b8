import FlowStore
import Foundation
import Testing

/// The databases every store test runs against: SQLite always, PostgreSQL when the test script started one
/// (`FLOWLINE_TEST_POSTGRES_URL`). In CI a missing PostgreSQL is a failure, not a skip.
public enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    public var testDescription: String { rawValue }

    /// PostgreSQL's URL, or the test ends: skipped outside scripts/test.sh, failed under it (`Peer`).
    public static func postgresURL(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try Peer.value("FLOWLINE_TEST_POSTGRES_URL", sourceLocation: sourceLocation)
    }

    /// Both backends; SQLite alone when PostgreSQL is neither set nor required. Swift Testing does not report a
    /// skipped case of a parameterized test, so the missing cases are reported by `BackendTests` as one skip.
    public static var available: [Backend] {
        ProcessInfo.processInfo.environment["FLOWLINE_TEST_POSTGRES_URL"] != nil || Peer.required ? allCases : [.sqlite]
    }

    /// A fresh, empty database for one test, migrated to the latest schema or through an earlier `version`.
    public func makeStore(migratedThrough version: Int = SQLStore.schemaVersion) async throws -> SQLStore {
        let store: SQLStore
        switch self {
        case .sqlite:
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-\(UUID().uuidString).db").path
            store = try await SQLStore.open("sqlite:\(path)")
        case .postgres:
            let base = try Backend.postgresURL()
            store = try await SQLStore.open(try await TestPostgres.freshDatabase(base))
        }
        try await store.migrate(through: version)
        return store
    }
}

public enum TestPostgres {
    /// Creates a new database next to the one in `base` and returns its URL.
    public static func freshDatabase(_ base: String) async throws -> String {
        try await SQLStore.createPostgresDatabase(nextTo: base)
    }
}
