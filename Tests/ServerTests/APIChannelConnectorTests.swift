import Connectors
import Crypto
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Synchronization
import FlowlineTestKit
import Testing

/// Replies on an `api` channel reach its callback URL: a real HTTP receiver on 127.0.0.1 records what arrives.
@Suite struct APIChannelConnectorTests {
    /// A callback receiver that answers from a script of statuses (then 200) and records every request.
    final class Receiver: Sendable {
        struct Hit: Sendable {
            var headers: HTTPFields
            var body: String
        }
        let hits = Mutex<[Hit]>([])
        let script: Mutex<[(HTTPResponse.Status, HTTPFields)]>

        init(script: [(HTTPResponse.Status, HTTPFields)] = []) {
            self.script = Mutex(script)
        }

        var app: some ApplicationProtocol {
            let router = Router()
            router.post("hook") { request, context -> Response in
                let body = try await request.body.collect(upTo: 1 << 20)
                self.hits.withLock { $0.append(Hit(headers: request.headers, body: String(buffer: body))) }
                let (status, headers) = self.script.withLock { $0.isEmpty ? (.ok, [:]) : $0.removeFirst() }
                return Response(status: status, headers: headers)
            }
            return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        }

        var recorded: [Hit] { hits.withLock { $0 } }
    }

    final class Clock: Sendable {
        let time = Mutex(Timestamp(milliseconds: 1_800_000_000_000))
        var now: Timestamp { time.withLock { $0 } }
        func advance(seconds: Int64) { time.withLock { $0 = $0.adding(seconds: seconds) } }
    }

    static let flow = """
        flow: hello
        trigger: { channel: api }
        start: ask
        blocks:
          ask:
            ask: "Name?"
            save: name
            next: bye
          bye:
            end: "Bye {{ name }}"
        """

    /// Publishes the flow, creates a channel with this callback and starts a conversation; returns the channel's answer.
    static func start(_ rig: RouterTests.Rig, _ client: some TestClientProtocol, callback: String, extra: String = "") async throws -> Value {
        let a = RouterTests.auth(rig.adminA)
        try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: RouterTests.body(flow))
        try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a)
        let channel = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body(
            #"{"kind": "api", "name": "web", "callback_url": "\#(callback)"\#(extra)}"#)) { r in
            #expect(r.status == .created)
            return RouterTests.json(r)
        }
        try await client.execute(uri: "/v1/channels/\(channel["id"].text)/inbound", method: .post, headers: a,
                                 body: RouterTests.body(#"{"from": "5511", "text": "hi", "id": "m1"}"#)) { #expect($0.status == .accepted) }
        return channel
    }

    @Test func repliesArePostedSignedWithAnIdempotencyKeyAndRetriedAfterA503() async throws {
        let receiver = Receiver(script: [(.serviceUnavailable, [HTTPField.Name("Retry-After")!: "7"])])
        let clock = Clock()
        let rig = try await RouterTests.Rig(clock: { clock.now })
        try await receiver.app.test(.live) { hook in
            try await rig.app.test(.router) { client in
                let channel = try await Self.start(rig, client, callback: "http://127.0.0.1:\(hook.port!)/hook")
                let secret = channel["signing_secret"].text
                #expect(secret.hasPrefix("whsec_"), "a generated signing secret is shown once, at creation")
                try await rig.engine.drain()
                #expect(receiver.recorded.count == 1)
                #expect(try await rig.store.deliveries(tenant: "a", state: .pending).first?.lastError?.contains("503") == true)

                clock.advance(seconds: 6)
                try await rig.engine.drain()
                #expect(receiver.recorded.count == 1, "Retry-After: 7 is honoured")
                clock.advance(seconds: 1)
                try await rig.engine.drain()
                let hits = receiver.recorded
                try #require(hits.count == 2)
                #expect(try await rig.store.deliveries(tenant: "a", state: .done).count == 1)

                let key = hits[0].headers[HTTPField.Name("Idempotency-Key")!]
                #expect(key != nil && key == hits[1].headers[HTTPField.Name("Idempotency-Key")!], "a retry carries the same key")
                let body = Value(json: hits[1].body) ?? .null
                #expect(body["text"] == "Name?")
                #expect(body["contact"] == "5511")
                #expect(body["id"] == .string(key ?? ""))
                #expect(body["channel"] == channel["id"])
                let conversation = body["conversation"].text
                try await client.execute(uri: "/v1/conversations/\(conversation)", method: .get, headers: RouterTests.auth(rig.adminA)) {
                    #expect($0.status == .ok, "the body names the conversation")
                }

                // The signature covers "t.body" exactly as sent; the receiver verifies it with the secret it was shown.
                let header = try #require(hits[1].headers[HTTPField.Name("Flowline-Signature")!])
                let parts = Dictionary(uniqueKeysWithValues: header.split(separator: ",").map {
                    let kv = $0.split(separator: "=", maxSplits: 1)
                    return (String(kv[0]), String(kv[1]))
                })
                let expected = HMAC<SHA256>.authenticationCode(for: Data("\(parts["t"] ?? "").\(hits[1].body)".utf8),
                                                               using: SymmetricKey(data: Data(secret.utf8)))
                #expect(parts["v1"] == expected.map { String(format: "%02x", $0) }.joined())
            }
        }
        await rig.store.close()
    }

    @Test func aClientErrorIsPermanentAndARefusedConnectionIsRetried() async throws {
        let receiver = Receiver(script: [(.badRequest, [:])])
        let clock = Clock()
        let rig = try await RouterTests.Rig(clock: { clock.now })
        try await receiver.app.test(.live) { hook in
            try await rig.app.test(.router) { client in
                _ = try await Self.start(rig, client, callback: "http://127.0.0.1:\(hook.port!)/hook")
                try await rig.engine.drain()
                clock.advance(seconds: 3600)
                try await rig.engine.drain()
                #expect(receiver.recorded.count == 1, "a 400 is not retried")
                let dead = try await rig.store.deliveries(tenant: "a", state: .dead)
                #expect(dead.count == 1)
                #expect(dead.first?.lastError?.contains("callback_400") == true)
                #expect(dead.first?.lastError?.contains("127.0.0.1") == false, "errors do not repeat the callback URL")
            }
        }
        await rig.store.close()

        // Nothing listens on the port: the connection is refused, which is worth trying again.
        let closed = ClosedPort()
        let rig2 = try await RouterTests.Rig(clock: { clock.now })
        try await rig2.app.test(.router) { client in
            _ = try await Self.start(rig2, client, callback: closed.url + "/hook")
            try await rig2.engine.drain()
            let pending = try await rig2.store.deliveries(tenant: "a", state: .pending)
            #expect(pending.first?.attempts == 1)
            #expect(pending.first?.lastError?.contains("unreachable") == true)
        }
        await rig2.store.close()
    }

    @Test func channelSecretsAreWriteOnlyAndSealedAtRest() async throws {
        let rig = try await RouterTests.Rig()
        let closed = ClosedPort()
        let given = "my-own-signing-secret-0123456789"
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.start(rig, client, callback: closed.url + "/hook", extra: #", "secret": "\#(given)""#)
            #expect(channel["signing_secret"] == .null, "a secret the caller gave is not echoed")
            #expect(channel["signed"] == true)
            try await client.execute(uri: "/v1/channels", method: .get, headers: a) { r in
                let text = String(buffer: r.body)
                #expect(!text.contains(given))
                #expect(RouterTests.json(r)["channels"][0]["signed"] == true)
            }
            try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                     body: RouterTests.body(#"{"kind": "api", "name": "x", "secret": "short"}"#)) { #expect($0.status == .badRequest) }
            let stored = try #require(try await rig.store.channel(id: channel["id"].text, tenant: "a"))
            let sealed = try #require(stored.sealedSecret)
            #expect(!sealed.contains(given) && sealed.hasPrefix("v1:"))
            #expect(try RouterTests.secrets.open(sealed, context: stored.secretContext) == given)
        }
        await rig.store.close()

        // Without a key the server refuses to take a secret rather than store it in the clear.
        let keyless = try await RouterTests.Rig(secrets: nil)
        try await keyless.app.test(.router) { client in
            try await client.execute(uri: "/v1/channels", method: .post, headers: RouterTests.auth(keyless.adminA),
                                     body: RouterTests.body(#"{"kind": "api", "name": "x", "callback_url": "\#(closed.url)/"}"#)) { r in
                #expect(r.status == .serviceUnavailable)
                #expect(RouterTests.json(r)["detail"].text.contains("FLOWLINE_SECRET_KEY"))
            }
        }
        await keyless.store.close()
    }
}
