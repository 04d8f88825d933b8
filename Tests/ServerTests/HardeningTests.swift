import AsyncHTTPClient
import FlowEngine
import FlowlineTestKit
import FlowStore
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
@testable import Server
import Synchronization
import Testing

/// The API boundary against hostile input: what must be refused, what must not stop the server for anyone else.
@Suite struct HardeningTests {
    typealias R = RouterTests

    @Test func nulAndControlCharactersAreRefusedAtTheBoundary() async throws {
        let rig = try await R.Rig()
        try await rig.app.test(.router) { client in
            let a = R.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: R.body(R.flow))
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a) { #expect($0.status == .created) }
            let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: R.body(#"{"kind": "api", "name": "web"}"#)) { R.json($0)["id"].text }
            // Each of these used to be cut at the NUL: a first message answered "duplicate", a contact "55".
            for body in [#"{"from": "55", "text": "hi", "id": "nul\u0000a"}"#, #"{"from": "55\u0000nul2", "text": "hi", "id": "m1"}"#,
                         #"{"from": "55", "text": "a\u0000b", "id": "m2"}"#, #"{"from": "55\u0007", "text": "hi", "id": "m3"}"#,
                         #"{"from": "55", "text": "hi", "id": "m4\n"}"#] {
                try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a, body: R.body(body)) { r in
                    #expect(r.status == .badRequest, "\(body)")
                }
            }
            try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: R.body(#"{"kind": "api", "name": "we\u0000b"}"#)) {
                #expect($0.status == .badRequest)
            }
            try await client.execute(uri: "/v1/keys", method: .post, headers: a, body: R.body(#"{"role": "agent", "label": "ops\u0001"}"#)) {
                #expect($0.status == .badRequest)
            }
            // An optional text given as null is not text either.
            try await client.execute(uri: "/v1/keys", method: .post, headers: a, body: R.body(#"{"role": "agent", "label": null}"#)) {
                #expect($0.status == .badRequest)
            }
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: R.body(#"{"from": "55", "text": "hi", "id": "m5", "name": null}"#)) { #expect($0.status == .badRequest) }
            // Nothing of the refused requests was stored, and an honest message still goes through.
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: R.body(#"{"from": "55", "text": "hi", "id": "nul"}"#)) { r in
                #expect(r.status == .accepted)
                #expect(R.json(r)["status"] == "started", "not a duplicate of the refused 'nul\\u0000a'")
            }
        }
        #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: nil).map(\.contact) == ["55"])
        await rig.store.close()
    }

    @Test func repeatedJSONKeysAreRefusedNotReadAsTheLastOne() async throws {
        let rig = try await R.Rig()
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/v1/keys", method: .post, headers: R.auth(rig.adminA),
                                     body: R.body(#"{"role": "agent", "role": "admin"}"#)) { r in
                #expect(r.status == .badRequest)
                #expect(R.json(r)["detail"].text.contains("\"role\" appears twice"))
            }
        }
        let keys = try await rig.store.apiKeys(tenant: "a").items
        #expect(keys.map(\.role).sorted() == ["admin", "agent"], "only the rig's own keys: nothing was created")
        await rig.store.close()
    }

    /// SQLite hands text back only up to a NUL, so an id `p\0 1` read back as `p` and the next `p\0 2` was a
    /// "duplicate". Anything that still carries a NUL is stored with U+FFFD in its place: ids stay distinct.
    @Test func idsWithANulStayDistinct() async throws {
        let rig = try await R.Rig()
        _ = try await rig.engine.ingest(Inbound(tenant: "a", channel: "c", channelKind: "api", contact: "55", contactName: nil,
                                                    providerID: "p\u{0}1", message: InboundMessage(text: "x\u{0}y")))
        let again = try await rig.engine.ingest(Inbound(tenant: "a", channel: "c", channelKind: "api", contact: "55", contactName: nil,
                                                        providerID: "p\u{0}1", message: InboundMessage(text: "x\u{0}y")))
        let other = try await rig.engine.ingest(Inbound(tenant: "a", channel: "c", channelKind: "api", contact: "55", contactName: nil,
                                                        providerID: "p\u{0}2", message: InboundMessage(text: "z")))
        guard case .duplicate = again else {
            Issue.record("the same id must be a duplicate, got \(again)")
            return
        }
        if case .duplicate = other { Issue.record("a different id after the NUL is not a duplicate") }
        await rig.store.close()
    }

    @Test func theLimiterAnswers429ForATenantAnd503ForTheServer() async throws {
        // No slot for any tenant: its own requests wait, then are told to come back.
        let perTenant = try await R.Rig(limiter: WorkLimiter(perTenant: 0, total: 4, queueTimeout: .milliseconds(50)))
        try await perTenant.app.test(.router) { client in
            try await client.execute(uri: "/v1/flows/hello/validate", method: .post, headers: R.auth(perTenant.adminA), body: R.body(R.flow)) { r in
                #expect(r.status == .tooManyRequests)
                #expect(r.headers[.retryAfter] == "1")
                #expect(R.json(r)["type"] == "too_many_requests")
            }
        }
        await perTenant.store.close()
        let busy = try await R.Rig(limiter: WorkLimiter(perTenant: 4, total: 0, queueTimeout: .milliseconds(50)))
        try await busy.app.test(.router) { client in
            try await client.execute(uri: "/v1/flows/hello/validate", method: .post, headers: R.auth(busy.adminA), body: R.body(R.flow)) { r in
                #expect(r.status == .serviceUnavailable)
                #expect(r.headers[.retryAfter] == "2")
            }
            // Requests that compile nothing are not held back.
            try await client.execute(uri: "/v1/conversations", method: .get, headers: R.auth(busy.adminA)) { #expect($0.status == .ok) }
        }
        await busy.store.close()
    }

    /// One tenant holding its slots waits alone; another tenant still gets in; a freed slot goes to the next in line.
    @Test func theLimiterSharesSlotsAmongTenants() async throws {
        let limiter = WorkLimiter(perTenant: 1, total: 2, queueTimeout: .seconds(5))
        let release = Mutex(false)
        let blocking: @Sendable () -> Int = {
            while !release.withLock({ $0 }) { usleep(1_000) }
            return 1
        }
        let a1 = Task { try await limiter.run(tenant: "a", blocking) }
        try await Task.sleep(for: .milliseconds(100))
        // Tenant b is admitted while a holds its one slot.
        #expect(try await limiter.run(tenant: "b") { 2 } == 2)
        // A second request of a waits for a's slot: it is admitted once a1 finishes, well within its timeout.
        let a2 = Task { try await limiter.run(tenant: "a") { 3 } }
        try await Task.sleep(for: .milliseconds(100))
        release.withLock { $0 = true }
        #expect(try await a1.value == 1)
        #expect(try await a2.value == 3)
        // With a short timeout a queued request is refused with 429 when its own tenant is the cause.
        let short = WorkLimiter(perTenant: 1, total: 2, queueTimeout: .milliseconds(100))
        release.withLock { $0 = false }
        let held = Task { try await short.run(tenant: "a", blocking) }
        try await Task.sleep(for: .milliseconds(50))
        await #expect(throws: Problem.self) { try await short.run(tenant: "a") { 0 } }
        release.withLock { $0 = true }
        _ = try await held.value
    }

    /// `serve` with a malformed key prints one line and exits 1, instead of dying with a fatal error and a backtrace.
    @Test func startupMistakesAreOneLineAndExitOne() throws {
        guard FileManager.default.isExecutableFile(atPath: ServeProcess.binary) else {
            Issue.record("build flowline first: \(ServeProcess.binary) is missing")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-startup-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (variable, value, expected) in [("FLOWLINE_ADMIN_KEY", "not-a-key", "FLOWLINE_ADMIN_KEY must look like"),
                                            ("FLOWLINE_SECRET_KEY", "short", "FLOWLINE_SECRET_KEY must be 32 bytes"),
                                            ("FLOWLINE_DATABASE_URL", "mysql://x", "the database must be")] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ServeProcess.binary)
            process.arguments = ["serve", "--port", "18999"]
            process.currentDirectoryURL = dir
            var env = ProcessInfo.processInfo.environment
            env[variable] = value
            process.environment = env
            let err = Pipe(), out = Pipe()
            process.standardError = err
            process.standardOutput = out
            try process.run()
            process.waitUntilExit()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationStatus == 1, "\(variable): exit \(process.terminationStatus)")
            #expect(process.terminationReason == .exit, "\(variable): not a crash")
            let lines = stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("flowline serve: ") && lines[0].contains(expected), "\(variable): \(stderr)")
            #expect(!stderr.contains("Fatal error") && !stderr.contains("backtrace"))
        }
    }

    /// A database that does not answer is one line too, for `serve` and `work` alike, once the pool has tried for 15 s:
    /// both reach it inside their service group, where the pool runs, and shut everything down on the way out.
    @Test func anUnreachableDatabaseIsOneLineForServeAndWork() throws {
        guard FileManager.default.isExecutableFile(atPath: ServeProcess.binary) else {
            Issue.record("build flowline first: \(ServeProcess.binary) is missing")
            return
        }
        let closed = ClosedPort()
        let url = "postgres://flowline:pw@127.0.0.1:\(closed.port)/flowline"
        var runs: [(String, Process, Pipe)] = []
        for arguments in [["serve", "--port", "0"], ["work"]] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: ServeProcess.binary)
            process.arguments = arguments
            var env = ProcessInfo.processInfo.environment
            env["FLOWLINE_DATABASE_URL"] = url
            env["FLOWLINE_SECRET_KEY"] = SecretBox.generateKey()
            process.environment = env
            let err = Pipe()
            process.standardError = err
            process.standardOutput = Pipe()
            try process.run()
            runs.append((arguments[0], process, err))
        }
        for (command, process, err) in runs {
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 1 && process.terminationReason == .exit, "\(command): \(stderr)")
            let lines = stderr.split(separator: "\n").filter { $0.hasPrefix("flowline \(command): ") }
            #expect(lines.count == 1 && lines[0].contains("cannot reach the database") && !lines[0].contains("pw@"), "\(command): \(stderr)")
            #expect(!stderr.contains("Fatal error") && !stderr.contains("backtrace"), "\(command): \(stderr)")
        }
    }

    // MARK: Fuzz

    /// Documents of every hostile shape: deep, wide, long and aliased, and flows that run costly patterns.
    struct Hostile {
        var rng: Xorshift

        mutating func next() -> String {
            let depth = 60 + Int(rng.next() % 3_000)
            switch rng.next() % 11 {
            case 0: return "flow: f\nstart: a\nblocks:\n  a:\n    next:\n      - when: \"\(String(repeating: "(", count: depth))x\(String(repeating: ")", count: depth))\"\n        goto: a\n"
            case 1: return "flow: f\nstart: a\nblocks:\n  a:\n    text: \"{{ \(String(repeating: "not ", count: depth * 3))x }}\"\n    next: a\n"
            case 2: return "flow: f\nx: " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "\n"
            case 3: return "flow: f\nx: " + String(repeating: "{a: ", count: depth) + "1" + String(repeating: "}", count: depth) + "\n"
            case 4:
                var bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                for (p, c) in zip("abcdefg", "bcdefgh") { bomb += "\(c): &\(c) [" + Array(repeating: "*\(p)", count: 10).joined(separator: ", ") + "]\n" }
                return bomb
            case 5:
                var chain = "flow: f\nstart: b0\nblocks:\n"
                for i in 0..<(2_000 + Int(rng.next() % 4_000)) { chain += "  b\(i): {text: t, next: b\(i + 1)}\n" }
                return chain
            case 6:
                let id = String(repeating: "q", count: 300 + Int(rng.next() % 400))
                return "flow: f\nstart: \(id)0\nblocks:\n" + (0..<40).map { "  \(id)\($0):\n    text: t\n    next: \(id)x\($0)\n" }.joined()
            case 7: return "flow: f\nstart: a\nblocks:\n  a:\n    set: {x: \"" + Array(repeating: "1", count: depth).joined(separator: " + ") + "\"}\n    next: a\n"
            case 8: return "flow: f\nstart: a\nblocks:\n  a:\n    ask: q\n    validate: {pattern: '(x+x+)+y'}\n    save: v\n    next: a\n"
            case 9: return "{\"flow\": \"f\", \"x\": " + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
            default: return "flow: f\ndescription: \"" + String(repeating: "z", count: 400_000) + "\"\n"
            }
        }
    }

    struct Xorshift {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
    }

    /// A flow that is valid but computes its pattern, so only the run-time budget stands between a contact's reply
    /// and a core held for minutes.
    static let computedPattern = """
        flow: rx
        trigger: { channel: api }
        start: set
        blocks:
          set:
            set: { pattern: "'(x+x+)+' + 'y'" }
            next: ask
          ask:
            ask: "Say something"
            save: said
            next:
              - when: said matches pattern
                goto: yes
              - goto: no
            on_error: oops
          yes:
            end: "matched"
          no:
            end: "no match"
          oops:
            end: "{{ error.code }}"
        """

    final class Stats: Sendable {
        private let state = Mutex<[Duration]>([])
        func record(_ d: Duration) { state.withLock { $0.append(d) } }
        var slowest: Duration { state.withLock { $0.max() ?? .zero } }
        var median: Duration { state.withLock { $0.isEmpty ? .zero : $0.sorted()[$0.count / 2] } }
        var count: Int { state.withLock { $0.count } }
    }

    /// Plain HTTP against a live server, so requests really run side by side.
    struct Client: Sendable {
        let http: HTTPClient
        let base: String

        func call(_ method: HTTPMethod, _ path: String, key: String?, body: String? = nil,
                  timeout: TimeAmount = .seconds(60)) async throws -> (status: UInt, body: String) {
            var request = HTTPClientRequest(url: base + path)
            request.method = method
            if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
            if let body { request.body = .bytes(ByteBuffer(string: body)) }
            let response = try await http.execute(request, timeout: timeout)
            return (response.status.code, String(buffer: try await response.body.collect(upTo: 4 << 20)))
        }
    }

    /// Hostile documents to validate and simulate, from several clients at once for a bounded time, while another
    /// tenant's requests and /health must keep answering within a deadline.
    @Test func theServerKeepsAnsweringUnderHostileDocuments() async throws {
        let rig = try await R.Rig()
        let (adminA, adminB) = (rig.adminA, rig.adminB)
        try await rig.app.test(.live) { client in
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                try await Self.fuzz(Client(http: http, base: "http://127.0.0.1:\(client.port!)"), adminA: adminA, adminB: adminB)
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
        await rig.store.close()
    }

    static func fuzz(_ client: Client, adminA: String, adminB: String) async throws {
        // A valid flow whose pattern is computed, saved for simulation.
        #expect(try await client.call(.PUT, "/v1/flows/rx", key: adminA, body: Self.computedPattern).status == 201)
        // The hostile clients run until the health sampler has its samples (or a minute passes, which fails below).
        let deadline = ContinuousClock.now + .seconds(60)
        let samples = 6
        let stats = Stats()
        let hostileRequests = Stats()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var hostile = Hostile(rng: Xorshift(state: 0x9E37_79B9_7F4A_7C15 &+ UInt64(worker)))
                    while stats.count < samples, ContinuousClock.now < deadline {
                        let document = hostile.next()
                        let status = try await client.call(.POST, "/v1/flows/f/validate", key: adminA, body: document).status
                        #expect([200, 413, 429, 503].contains(status), "validate answered \(status)")
                        // Saved as a draft (whatever its errors) and simulated: refused as invalid, in bounded time.
                        let put = try await client.call(.PUT, "/v1/flows/f\(worker)", key: adminA, body: document).status
                        #expect([200, 201, 400, 409, 413, 429, 503].contains(put), "put answered \(put)")
                        let simulatedDraft = try await client.call(.POST, "/v1/flows/f\(worker)/simulate", key: adminA, body: "{}").status
                        #expect([404, 409, 429, 503].contains(simulatedDraft), "simulate of a hostile draft answered \(simulatedDraft)")
                        let input = String(repeating: "x", count: 5_000)
                        let simulated = try await client.call(.POST, "/v1/flows/rx/simulate", key: adminA, body: #"{"inputs": ["\#(input)"]}"#)
                        #expect([200, 429, 503].contains(simulated.status), "simulate answered \(simulated.status)")
                        if simulated.status == 200 { #expect(simulated.body.contains("expression_error"), "the match ran out of budget") }
                        hostileRequests.record(.zero)
                    }
                }
            }
            // Meanwhile: the server's health, and another tenant's ordinary request, each within a deadline.
            group.addTask {
                // The first sample once the hostile clients have made four rounds (and go on while it samples).
                _ = try await Peers.eventually("the hostile clients are sending", seconds: 40) { hostileRequests.count >= 4 ? true : nil }
                while stats.count < samples, ContinuousClock.now < deadline {
                    let started = ContinuousClock.now
                    let health = try await client.call(.GET, "/health", key: nil, timeout: .seconds(10)).status
                    let flows = try await client.call(.GET, "/v1/flows", key: adminB, timeout: .seconds(10)).status
                    let took = ContinuousClock.now - started
                    #expect(health == 200 && flows == 200)
                    stats.record(took)
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            try await group.waitForAll()
        }
        #expect(stats.count == samples, "health was sampled \(stats.count) times within a minute")
        // Before the limits, one such document stopped the process and four at once stalled others for 21 s. The
        // typical sample must stay within seconds (2.1 s was seen in CI); the slowest may meet the rest of the test suite
        // sharing the machine's two cores (8 s was seen once in CI), so its bound only tells a stall from a delay.
        #expect(stats.median < .seconds(5), "the median health check took \(stats.median)")
        #expect(stats.slowest < .seconds(15), "slowest health check took \(stats.slowest)")
        #expect(try await client.call(.GET, "/health", key: nil, timeout: .seconds(3)).status == 200)
    }
}
