import FlowEngine
import FlowStore
import FlowVM
import Foundation
import PostgresNIO
import FlowlineTestKit
import Testing

/// Separate engine processes on one PostgreSQL, killed with SIGKILL at random moments: nothing is lost, nothing
/// is done twice.
@Suite(.serialized) struct CrashTests {
    static let flow = """
        flow: crash
        trigger: { channel: api }
        start: hello
        blocks:
          hello:
            text: "hello {{ message.text }}"
            next: first
          first:
            ask: "q1"
            save: x1
            next: second
          second:
            ask: "q2"
            save: x2
            next: bye
          bye:
            end: "bye {{ x1 }} {{ x2 }}"
        """

    static let binary = Golden.root.appendingPathComponent(".build/debug/flowline").path

    /// A worker process writing what it sends to `channelFile`.
    final class Worker: @unchecked Sendable {
        let process = Process()
        init(database: String, channelFile: String, log: String) throws {
            process.executableURL = URL(fileURLWithPath: CrashTests.binary)
            process.arguments = ["work", "--database", database, "--channel-file", channelFile, "--lease", "2", "--batch", "16"]
            FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            handle.seekToEndOfFile()
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }
        func kill() {
            let wasRunning = process.isRunning
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // A worker that had already died on its own would make the kill (and the test) meaningless.
            #expect(wasRunning && process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL,
                    "the worker was running and died of the kill")
        }
        func stop() {
            process.terminate()
            process.waitUntilExit()
        }
    }

    struct Setup {
        let url: String
        let store: SQLStore
        let engine: Engine
        let channelFile: String
        let log: String
    }

    func setUp() async throws -> Setup {
        let base = try Backend.postgresURL()
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            Issue.record("build flowline first: \(Self.binary) is missing")
            throw Peer.Missing(description: "no flowline binary")
        }
        let url = try await TestPostgres.freshDatabase(base)
        let store = try await SQLStore.open(url)
        try await store.migrate()
        try await store.ensureTenant(id: "t1", name: "t1")
        let engine = Engine(store: store, connectors: ConnectorRegistry())
        try await engine.publish(tenant: "t1", program: try Flows.compile(Self.flow), source: Self.flow)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return Setup(url: url, store: store, engine: engine, channelFile: dir.appendingPathComponent("sent.jsonl").path,
                     log: dir.appendingPathComponent("workers.log").path)
    }

    /// Ingests three messages for each of `contacts` contacts: some as bursts, the rest interleaved.
    static func ingestAll(_ engine: Engine, contacts: Int) async throws {
        for i in stride(from: 0, to: contacts, by: 3) {
            _ = try await engine.ingest(inbound("start-\(i)", from: "u\(i)", id: "s\(i)"))
            _ = try await engine.ingest(inbound("a-\(i)", from: "u\(i)", id: "a\(i)"))
            _ = try await engine.ingest(inbound("b-\(i)", from: "u\(i)", id: "b\(i)"))
        }
        let rest = (0..<contacts).filter { $0 % 3 != 0 }
        for (prefix, idPrefix) in [("start", "s"), ("a", "a"), ("b", "b")] {
            for i in rest {
                _ = try await engine.ingest(inbound("\(prefix)-\(i)", from: "u\(i)", id: "\(idPrefix)\(i)"))
                // A repeated provider id, as webhooks deliver them, must change nothing.
                if i % 10 == 1 { #expect(try await engine.ingest(inbound("\(prefix)-\(i)", from: "u\(i)", id: "\(idPrefix)\(i)")) == .duplicate) }
            }
        }
    }

    /// Waits until every conversation ended and nothing is pending, or the deadline passes.
    static func waitForCompletion(_ store: SQLStore, contacts: Int, seconds: Double) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let backlog = try await store.backlog(now: Timestamp(Date()))
            if backlog == (0, 0), try await store.conversations(tenant: "t1", status: .ended, contact: nil).count == contacts {
                return true
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        return false
    }

    /// Every conversation ended; every inbound message was processed exactly once; the channel got every
    /// message, the same content under the same key, in order per contact.
    /// `kills` bounds the repeats: a kill can catch at most one claimed batch of deliveries between call and done mark.
    static func verify(_ s: Setup, contacts: Int, kills: Int) async throws {
        let conversations = try await s.store.conversations(tenant: "t1", status: nil, contact: nil)
        #expect(conversations.count == contacts)
        #expect(conversations.allSatisfy { $0.status == .ended })

        for c in conversations {
            let traces = try await s.store.traces(conversation: c.id, tenant: "t1")
            let inbound = traces.filter { $0.event["kind"] == "message" }.map(\.event["text"].text)
            let i = c.contact.dropFirst()
            if inbound != ["start-\(i)", "a-\(i)", "b-\(i)"] {
                Issue.record("\(c.contact) processed \(inbound)")
                return
            }
        }

        let lines = (try String(contentsOfFile: s.channelFile, encoding: .utf8)).split(separator: "\n")
        var byKey: [String: Value] = [:]
        var order: [String: [String]] = [:]
        var duplicates = 0
        for line in lines {
            guard let v = Value(json: String(line)) else {
                Issue.record("unreadable channel line: \(line)")
                continue
            }
            let key = v["key"].text
            if let seen = byKey[key] {
                duplicates += 1
                #expect(seen == v, "a redelivery under \(key) must carry the same content")
            } else {
                byKey[key] = v
                order[v["contact"].text, default: []].append(v["text"].text)
            }
        }
        #expect(byKey.count == contacts * 4)
        for i in 0..<contacts {
            let got = order["u\(i)"] ?? []
            if got != ["hello start-\(i)", "q1", "q2", "bye a-\(i) b-\(i)"] {
                Issue.record("u\(i) received \(got)")
                return
            }
        }
        #expect(duplicates <= kills * Engine.Configuration().deliveryBatch, "\(duplicates) repeats for \(kills) kills")
        print("crash test: \(lines.count) deliveries, \(duplicates) redelivered after a kill and de-duplicated by key")
    }

    @Test func killedRepeatedlyAndRestartedLosesNothing() async throws {
        let s = try await setUp()
        let contacts = 2000
        let ingest = Task { try await Self.ingestAll(s.engine, contacts: contacts) }
        var worker = try Worker(database: s.url, channelFile: s.channelFile, log: s.log)
        for _ in 0..<6 {
            try await Task.sleep(for: .milliseconds(Int.random(in: 300...1500)))
            worker.kill()
            worker = try Worker(database: s.url, channelFile: s.channelFile, log: s.log)
        }
        try await ingest.value
        let done = try await Self.waitForCompletion(s.store, contacts: contacts, seconds: 240)
        worker.stop()
        #expect(done, "the work did not finish; see \(s.log)")
        try await Self.verify(s, contacts: contacts, kills: 6)
        await s.store.close()
    }

    @Test func twoWorkersOneKilledTheOtherFinishes() async throws {
        let s = try await setUp()
        let contacts = 1000
        let ingest = Task { try await Self.ingestAll(s.engine, contacts: contacts) }
        let a = try Worker(database: s.url, channelFile: s.channelFile, log: s.log)
        let b = try Worker(database: s.url, channelFile: s.channelFile, log: s.log)
        try await Task.sleep(for: .milliseconds(1500))
        a.kill()
        try await ingest.value
        let done = try await Self.waitForCompletion(s.store, contacts: contacts, seconds: 240)
        b.stop()
        #expect(done, "the surviving worker did not finish; see \(s.log)")
        try await Self.verify(s, contacts: contacts, kills: 1)
        await s.store.close()
    }
}

enum Golden {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
