import FlowVM
import Foundation

/// A channel that appends every outbound message to a JSON-lines file, one line per delivery attempt:
/// `{"key": ..., "contact": ..., "text": ..., "message": {...}}`. For local runs and for crash tests, where a
/// separate process reads what was "sent". Each line is one `write(2)` on an `O_APPEND` descriptor.
public final class FileChannel: Connector, @unchecked Sendable {
    public let definitions = [ActionDefinition.channelSend]
    private let fd: Int32

    public init(path: String) throws {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard fd >= 0 else { throw EngineError(.invalid, "cannot open \(path) for appending") }
    }

    deinit { close(fd) }

    public func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        let line: Value = [
            "key": .string(context.idempotencyKey), "conversation": .string(context.conversation),
            "contact": parameters["contact"], "text": parameters["message"]["text"], "message": parameters["message"],
        ]
        let bytes = Array((line.jsonText + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw ConnectorError(code: "io", message: "short write to the channel file", retryable: true)
        }
        return ["written": true]
    }
}
