import FlowlineTestKit
import Testing

/// Reported as skipped when the backend-parameterized tests ran on SQLite only.
@Suite struct BackendTests {
    @Test func theStoreTestsRunOnPostgreSQLToo() throws {
        _ = try Backend.postgresURL()
    }
}
