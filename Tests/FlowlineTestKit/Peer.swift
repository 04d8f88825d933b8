import Foundation
import Testing

/// The database and protocol peers `scripts/test.sh` starts on loopback, found through environment variables.
/// Run outside the script, a test whose peer is missing is cancelled and reported as skipped (`➜ … was cancelled`);
/// under the script or in CI (`FLOWLINE_REQUIRE_PEERS`, `CI`) it fails instead. A test never passes without its peer.
public enum Peer {
    /// Whether a missing peer fails the run instead of skipping the test.
    public static var required: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["CI"] != nil || env["FLOWLINE_REQUIRE_PEERS"] != nil
    }

    /// A missing peer the run requires.
    public struct Missing: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// The value of `variable`, or the test ends here: failed when peers are required, skipped otherwise.
    public static func value(_ variable: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        if let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty { return value }
        try missing("\(variable) is not set: scripts/test.sh starts this peer", sourceLocation: sourceLocation)
    }

    /// Ends the test: a failure when peers are required, a skip otherwise.
    public static func missing(_ why: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Never {
        if required {
            Issue.record(Comment(rawValue: why), sourceLocation: sourceLocation)
            throw Missing(description: why)
        }
        try Test.cancel(Comment(rawValue: why), sourceLocation: sourceLocation)
        throw Missing(description: why)
    }
}
