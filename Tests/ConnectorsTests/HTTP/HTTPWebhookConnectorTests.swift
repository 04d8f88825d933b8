import Connectors
import Crypto
import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import FlowlineTestKit
import Testing

/// `http.request` (the `webhook:` block) against a real HTTP peer on 127.0.0.1.
@Suite struct HTTPWebhookConnectorTests {
    final class Seen: Sendable {
        let requests = Mutex<[(method: String, uri: String, headers: HTTPFields, body: String)]>([])
    }

    /// Echoes what it received on /echo; /status/N answers N (503 with Retry-After: 3); /slow takes 2 s.
    static func peer(_ seen: Seen) -> some ApplicationProtocol {
        let router = Router()
        router.on("echo", method: .post) { request, _ in try await echo(request, seen) }
        router.on("echo", method: .get) { request, _ in try await echo(request, seen) }
        router.on("echo", method: .put) { request, _ in try await echo(request, seen) }
        router.get("status/{code}") { _, context -> Response in
            let code = Int(context.parameters.get("code") ?? "") ?? 500
            return Response(status: .init(code: code), headers: code == 503 ? [HTTPField.Name("Retry-After")!: "3"] : [:])
        }
        router.get("slow") { _, _ -> Response in
            try await Task.sleep(for: .seconds(2))
            return Response(status: .ok)
        }
        router.get("text") { _, _ in "plain words" }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static func echo(_ request: Request, _ seen: Seen) async throws -> Response {
        let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
        seen.requests.withLock { $0.append((request.method.rawValue, request.uri.description, request.headers, body)) }
        let answer: Value = ["method": .string(request.method.rawValue), "query": .string(request.uri.query ?? ""), "received": .string(body)]
        return Response(status: .ok, headers: [.contentType: "application/json", HTTPField.Name("X-Trace")!: "t-1"],
                        body: .init(byteBuffer: ByteBuffer(string: answer.jsonText)))
    }

    static func context(_ timeout: Duration = .seconds(5)) -> ConnectorContext {
        ConnectorContext(tenant: "t1", conversation: "c1", idempotencyKey: "c1:4", attempt: 1, deadline: .now + timeout)
    }

    static func failure(_ body: () async throws -> Value) async -> ConnectorError? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? ConnectorError
        }
    }

    @Test func sendsJSONOrAFormWithHeadersQueryKeyAndSignature() async throws {
        let seen = Seen()
        try await Self.peer(seen).test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            let webhook = HTTPWebhookConnector(signingSecret: "whsec_test_secret")
            let r = try await webhook.perform(action: "http.request", parameters: [
                "url": .string(base + "/echo?fixed=1"), "query": ["name": "Ana Lúcia", "n": 2],
                "headers": ["Authorization": "Bearer abc"], "body": ["name": "Ana", "slot": 3],
            ], context: Self.context())
            #expect(r["status"] == 200)
            #expect(r["headers"]["x-trace"] == "t-1")
            #expect(r["body"]["method"] == "POST", "a body means POST")
            #expect(Value(json: r["body"]["received"].text) == ["name": "Ana", "slot": 3])
            let query = r["body"]["query"].text
            #expect(query.contains("fixed=1") && query.contains("n=2") && query.contains("name=Ana%20L%C3%BAcia"))

            let sent = try #require(seen.requests.withLock { $0.first })
            #expect(sent.headers[.authorization] == "Bearer abc")
            #expect(sent.headers[.contentType] == "application/json")
            #expect(sent.headers[HTTPField.Name("Idempotency-Key")!] == "c1:4")
            // The receiver verifies the signature with the shared secret over "t.body".
            let signature = try #require(sent.headers[HTTPField.Name("Flowline-Signature")!])
            let fields = Dictionary(uniqueKeysWithValues: signature.split(separator: ",").map {
                let kv = $0.split(separator: "=", maxSplits: 1)
                return (String(kv[0]), String(kv[1]))
            })
            let mac = HMAC<SHA256>.authenticationCode(for: Data("\(fields["t"] ?? "").\(sent.body)".utf8),
                                                      using: SymmetricKey(data: Data("whsec_test_secret".utf8)))
            #expect(fields["v1"] == mac.map { String(format: "%02x", $0) }.joined())

            let form = try await webhook.perform(action: "http.request", parameters: [
                "url": .string(base + "/echo"), "method": "put",
                "headers": ["Content-Type": "application/x-www-form-urlencoded"], "body": ["a": "x y", "b": "1+1"],
            ], context: Self.context())
            #expect(form["body"]["method"] == "PUT")
            #expect(form["body"]["received"] == "a=x%20y&b=1%2B1")

            let get = try await webhook.perform(action: "http.request", parameters: ["url": .string(base + "/echo")], context: Self.context())
            #expect(get["body"]["method"] == "GET", "no body means GET")
            let text = try await webhook.perform(action: "http.request", parameters: ["url": .string(base + "/text")], context: Self.context())
            #expect(text["body"] == "plain words")
        }
    }

    @Test func failuresSayWhetherToRetry() async throws {
        let seen = Seen()
        try await Self.peer(seen).test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            let webhook = HTTPWebhookConnector()
            func call(_ path: String, _ extra: [String: Value] = [:], timeout: Duration = .seconds(5)) async -> ConnectorError? {
                var p: [String: Value] = ["url": .string(base + path)]
                for (k, v) in extra { p[k] = v }
                let parameters = Value.map(p)
                return await Self.failure { try await webhook.perform(action: "http.request", parameters: parameters, context: Self.context(timeout)) }
            }
            let unavailable = await call("/status/503")
            #expect(unavailable?.retryable == true && unavailable?.retryAfter == 3 && unavailable?.code == "http_503")
            let limited = await call("/status/429")
            #expect(limited?.retryable == true)
            let missing = await call("/status/404")
            #expect(missing?.retryable == false && missing?.code == "http_404")
            let slow = await call("/slow", ["timeout": "1s"])
            #expect(slow?.code == "unreachable" && slow?.retryable == true, "the block's timeout bounds the call")
            // Another scheme at the very receiver: refused before anything is sent, which the receiver would have seen.
            let before = seen.requests.withLock { $0.count }
            let bad = await call("", ["url": .string("ftp://127.0.0.1:\(client.port!)/echo")])
            #expect(bad?.code == "invalid_url" && bad?.retryable == false)
            #expect(seen.requests.withLock { $0.count } == before, "nothing reached the receiver")
        }
        let closed = ClosedPort()
        let refused = await Self.failure {
            try await HTTPWebhookConnector().perform(action: "http.request", parameters: ["url": .string(closed.url + "/x")],
                                                     context: Self.context(.seconds(1)))
        }
        #expect(refused?.code == "unreachable" && refused?.retryable == true)
    }

    @Test func retryAfterReadsSecondsAndHTTPDates() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(HTTPWebhookConnector.retryAfter("120", now: now) == 120)
        #expect(HTTPWebhookConnector.retryAfter(" 5 ", now: now) == 5)
        #expect(HTTPWebhookConnector.retryAfter("Tue, 14 Nov 2023 22:14:20 GMT", now: now) == 60)
        #expect(HTTPWebhookConnector.retryAfter("soon", now: now) == nil)
        #expect(HTTPWebhookConnector.retryAfter(nil, now: now) == nil)
    }
}
