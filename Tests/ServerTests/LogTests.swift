import FlowEngine
import FlowVM
import Foundation
import HummingbirdTesting
import Logging
@testable import Server
import Synchronization
import Testing

/// Structured logs: a request id on every request, the conversation id on what a request and a turn did, and
/// no key or message text anywhere.
@Suite struct LogTests {
    /// Keeps every line, rendered with its metadata.
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    struct Capture: LogHandler {
        let sink: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String, file: String,
                 function: String, line: UInt) {
            let all = metadata.merging(extra ?? [:]) { $1 }
            let rendered = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            sink.lines.withLock { $0.append("\(message) | \(rendered)") }
        }
    }

    @Test func requestsAndTurnsAreLoggedWithTheirIdsAndNoSecrets() async throws {
        let sink = Lines()
        var logger = Logger(label: "flowline.test") { _ in Capture(sink: sink) }
        logger.logLevel = .debug
        let rig = try await RouterTests.Rig(logger: logger)
        let conversation = try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: RouterTests.body(RouterTests.flow))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a)
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0)["id"].text }
            let conversation = try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                                        body: RouterTests.body(#"{"from": "5511", "text": "my secret plan", "id": "m1"}"#)) {
                RouterTests.json($0)["conversation"].text
            }
            try await rig.engine.drain()
            return conversation
        }
        let lines = sink.all
        #expect(lines.filter { $0.hasPrefix("request |") }.count >= 4)
        #expect(lines.filter { $0.hasPrefix("request |") }.allSatisfy { $0.contains("hb.request.id=") && $0.contains("hb.response.status=") })
        let stored = try #require(lines.first { $0.hasPrefix("inbound message stored") })
        #expect(stored.contains("conversation=\(conversation)") && stored.contains("tenant=a") && stored.contains("hb.request.id="))
        #expect(lines.contains { $0.hasPrefix("turn |") && $0.contains("conversation=\(conversation)") }, "the engine's turn names it too")
        let keySecret = String(rig.adminA.split(separator: "_").last!)
        #expect(!lines.contains { $0.contains(keySecret) }, "no API key in any log line")
        #expect(!lines.contains { $0.contains("my secret plan") }, "no message text in any log line")
        await rig.store.close()
    }

    /// A WhatsApp verification handshake carries its verify token in the query, and a resume link is a bearer
    /// secret in the path: neither reaches the log, even when the request fails.
    @Test func secretsInPathsAndQueriesAreNotLogged() async throws {
        let sink = Lines()
        var logger = Logger(label: "flowline.test") { _ in Capture(sink: sink) }
        logger.logLevel = .debug
        let rig = try await RouterTests.Rig(logger: logger)
        let token = "c0ffee-conversation." + String(repeating: "ab", count: 32)
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/webhooks/whatsapp/ch_none?hub.mode=subscribe&hub.verify_token=very-secret-token&hub.challenge=42",
                                     method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/webhooks/resume/\(token)", method: .post, body: RouterTests.body("{}")) {
                #expect($0.status == .notFound)
            }
        }
        let requests = sink.all.filter { $0.hasPrefix("request |") }
        #expect(requests.count == 2)
        #expect(requests.contains { $0.contains("hb.request.path=/webhooks/resume/***") && $0.contains("hb.response.status=404") })
        #expect(requests.contains { $0.contains("hb.request.query=redacted") })
        #expect(!sink.all.contains { $0.contains("very-secret-token") }, "the verify token stays out of the log")
        #expect(!sink.all.contains { $0.contains(String(repeating: "ab", count: 32)) }, "the resume token stays out of the log")
        await rig.store.close()
    }
}
