import Connectors
import FlowCompiler
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import Logging
import PostgresNIO
import Synchronization
import FlowlineTestKit
import Testing

/// A clock tests move by hand.
final class TestClock: Sendable {
    private let time: Mutex<Timestamp>
    init(_ start: Timestamp = Timestamp(milliseconds: 1_767_614_400_000)) { time = Mutex(start) }
    var now: Timestamp { time.withLock { $0 } }
    func advance(seconds: Int64) { time.withLock { $0 = $0.adding(seconds: seconds) } }
    func set(_ t: Timestamp) { time.withLock { $0 = t } }
}

/// The receiving end of `channel.send`: records every delivery, de-duplicating by idempotency key the way
/// a real channel integration must, and remembering duplicates so tests can count them.
final class RecordingChannel: Connector, Sendable {
    let definitions = [ActionDefinition.channelSend]
    private let state = Mutex<(byKey: [String: Value], order: [String], byContact: [String: [String]], duplicates: Int,
                               failuresLeft: Int)>(([:], [], [:], 0, 0))

    init(failFirst: Int = 0) { state.withLock { $0.failuresLeft = failFirst } }

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        try state.withLock { s in
            if s.failuresLeft > 0 {
                s.failuresLeft -= 1
                throw ConnectorError(code: "unavailable", message: "channel down", retryable: true, retryAfter: 1)
            }
            if let seen = s.byKey[context.idempotencyKey] {
                s.duplicates += 1
                if seen != parameters { Issue.record("same key \(context.idempotencyKey) with different content") }
            } else {
                s.byKey[context.idempotencyKey] = parameters
                s.order.append(context.idempotencyKey)
                s.byContact[parameters["contact"].text, default: []].append(parameters["message"]["text"].text)
            }
        }
        return ["delivered": true]
    }

    /// Texts sent to `contact`, in delivery order.
    func texts(to contact: String) -> [String] {
        state.withLock { $0.byContact[contact] ?? [] }
    }

    var count: Int { state.withLock { $0.order.count } }
    var duplicates: Int { state.withLock { $0.duplicates } }
}

/// A connector action that fails a set number of times, then answers.
final class ScriptedConnector: Connector, Sendable {
    let definitions: [ActionDefinition]
    private let plan: Mutex<[Result<Value, ConnectorError>]>
    private let calls = Mutex<[String]>([])

    init(action: String, plan: [Result<Value, ConnectorError>]) {
        definitions = [ActionDefinition(name: action, summary: "scripted", parameters: ["type": "object"], result: [:])]
        self.plan = Mutex(plan)
    }

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        calls.withLock { $0.append(context.idempotencyKey) }
        let next = plan.withLock { p -> Result<Value, ConnectorError> in p.count > 1 ? p.removeFirst() : p[0] }
        return try next.get()
    }

    var keys: [String] { calls.withLock { $0 } }
}

enum Flows {
    static func compile(_ yaml: String) throws -> Program { try TestFlows.compile(yaml) }
}

/// The conversation an ingest was accepted into, and whether it started one; anything else fails the test there
/// (a test that went on with `return` would pass while routing is broken).
func accepted(_ result: IngestResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> (conversation: String, started: Bool) {
    guard case .accepted(let conversation, let started) = result else {
        Issue.record("expected the message to be accepted, got \(result)", sourceLocation: sourceLocation)
        throw CancellationError()
    }
    return (conversation, started)
}

func inbound(_ text: String, from contact: String, id: String, tenant: String = "t1", channel: String = "api-main") -> Inbound {
    TestFlows.inbound(text, from: contact, id: id, tenant: tenant, channel: channel)
}

