import FlowEngine
import FlowStore
import FlowVM
import Foundation
import NIOHTTP1
import Testing

/// Behaviour that needs real `flowline serve` processes: a graceful stop during a turn, and two processes on one
/// PostgreSQL database seeing each other's changes through their caches.
@Suite struct ProcessTests {
    /// A question and a goodbye, on the `api` channel.
    static let flow = APIChannelConnectorTests.flow

    static func temporaryDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-process-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/flows", withIntermediateDirectories: true)
        return dir
    }

    /// Publishes the flow and makes an `api` channel; returns its inbound path.
    static func setUp(_ api: ServeProcess.HTTP) async throws -> String {
        #expect(try await api.call(.PUT, "/v1/flows/hello", Self.flow, headers: [("Content-Type", "application/yaml")]).status == 201)
        #expect(try await api.call(.POST, "/v1/flows/hello/publish").status == 201)
        let channel = try await api.call(.POST, "/v1/channels", #"{"kind": "api", "name": "web"}"#)
        #expect(channel.status == 201)
        return "/v1/channels/\(channel.body["id"].text)/inbound"
    }

    /// SIGTERM while a turn has run and is not yet committed: the process waits for the commit, then exits 0.
    @Test(arguments: ["sqlite", "postgres"])
    func aGracefulStopFinishesTheTurnInFlight(backend: String) async throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let database = backend == "sqlite" ? "sqlite:\(dir)/flowline.db"
            : try await SQLStore.createPostgresDatabase(nextTo: try Peers.url("FLOWLINE_TEST_POSTGRES_URL"), prefix: "sigterm_")
        let serve = try await ServeProcess(database: database, log: dir + "/serve.log", secretKey: SecretBox.generateKey(), flows: dir + "/flows",
                                           environment: ["FLOWLINE_FAILPOINTS": "turn.after-run:message~1500"])
        defer { if serve.isRunning { serve.kill() } }
        let inbound = try await Self.setUp(serve.api)
        #expect(try await serve.api.call(.POST, inbound, #"{"from": "5", "text": "hi", "id": "m1"}"#).body["status"] == "started")
        _ = try await Peers.eventually("the turn has run and waits before its commit") { serve.output.contains("pausing 1500 ms") ? true : nil }
        let status = serve.stop()
        #expect(status == 0 && serve.process.terminationReason == .exit, "a clean exit: \(serve.output.suffix(1500))")

        let store = try await SQLStore.open(database)
        let conversations = try await store.conversations(tenant: "demo", status: nil, contact: "5")
        #expect(conversations.map(\.status) == [.waiting], "the turn was committed before the exit")
        if let c = conversations.first {
            #expect(try await store.traces(conversation: c.id, tenant: "demo").count == 1)
            #expect(try await store.messages(conversation: c.id, tenant: "demo").map(\.text) == ["hi", "Name?"])
        }
        await store.close()
    }

    /// Two servers on one database: a key revoked through one is refused by the other within 2 s (its key cache), and
    /// a flow published through one starts conversations on the other within 5 s (its flow cache).
    @Test func twoProcessesSeeEachOthersRevocationsAndPublications() async throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let database = try await SQLStore.createPostgresDatabase(nextTo: try Peers.url("FLOWLINE_TEST_POSTGRES_URL"), prefix: "caches_")
        let secret = SecretBox.generateKey()
        let a = try await ServeProcess(database: database, log: dir + "/a.log", secretKey: secret, flows: dir + "/flows")
        defer { a.stop() }
        let b = try await ServeProcess(database: database, log: dir + "/b.log", secretKey: secret, flows: dir + "/flows")
        defer { b.stop() }

        // A key made on A works on B (and is now in B's cache); revoked on A, B refuses it within its cache's 2 s.
        let made = try await a.api.call(.POST, "/v1/keys", #"{"role": "agent", "label": "temp"}"#)
        let key = made.body["key"].text
        let agent = [("Authorization", "Bearer \(key)")]
        #expect(try await b.api.call(.GET, "/v1/flows", headers: agent, auth: false).status == 200)
        #expect(try await a.api.call(.DELETE, "/v1/keys/\(made.body["id"].text)").status == 204)
        #expect(try await a.api.call(.GET, "/v1/flows", headers: agent, auth: false).status == 401, "at once where it was revoked")
        let revoked = ContinuousClock.now
        _ = try await Peers.eventually("B refuses the revoked key", seconds: 3) {
            try await b.api.call(.GET, "/v1/flows", headers: agent, auth: false).status == 401 ? true : nil
        }
        #expect(ContinuousClock.now - revoked <= .milliseconds(2500), "within the 2 s the docs promise")

        // B has looked for flows (none yet) and cached that; A publishes; B starts conversations within 5 s.
        let channel = try await a.api.call(.POST, "/v1/channels", #"{"kind": "api", "name": "web"}"#)
        let inbound = "/v1/channels/\(channel.body["id"].text)/inbound"
        #expect(try await b.api.call(.POST, inbound, #"{"from": "1", "text": "hi", "id": "warm"}"#).body["status"] == "unrouted")
        #expect(try await a.api.call(.PUT, "/v1/flows/hello", Self.flow, headers: [("Content-Type", "application/yaml")]).status == 201)
        #expect(try await a.api.call(.POST, "/v1/flows/hello/publish").status == 201)
        let published = ContinuousClock.now
        var n = 0
        _ = try await Peers.eventually("B starts a conversation on the flow A published", seconds: 6) { () -> Bool? in
            n += 1
            return try await b.api.call(.POST, inbound, #"{"from": "c\#(n)", "text": "hi", "id": "m\#(n)"}"#).body["status"] == "started" ? true : nil
        }
        #expect(ContinuousClock.now - published <= .milliseconds(5500), "within the 5 s the docs promise")
    }
}
