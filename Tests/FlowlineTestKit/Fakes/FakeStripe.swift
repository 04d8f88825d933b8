import Connectors
import Crypto
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// What localstripe lacks, written from Stripe's documented contract (API v1): Checkout Sessions, Prices and Payment
/// Links (form-encoded, bearer secret key), and idempotency as Stripe keeps it:
/// - keys are scoped to the account (the secret key): two accounts may use the same key;
/// - once an endpoint has begun executing, its answer is saved — **including a 500** — and every later request with
///   that key gets it again, marked `Idempotent-Replayed: true`;
/// - the same key on another endpoint or with other parameters is a 400 `idempotency_error`;
/// - a request while another with the same key is still executing is a 409 `idempotency_key_in_use`, and saves nothing;
/// - answers given before execution begins (a bad key, a missing parameter, a 429) save nothing.
///
/// `failures` scripts answers for the next requests; `hold()` parks the next creating request before it answers, so a
/// test can kill the caller while the request is in flight. `completed(_:)` builds the `checkout.session.completed`
/// event Stripe would send.
public final class FakeStripe: Sendable {
    /// The first account's secret key; `accounts` holds every key the fake accepts.
    public let key: String
    public let accounts: [String]

    public struct Request: Sendable {
        public var id: String
        public var account: String
        public var path: String
        public var form: [String: String]
        public var idempotencyKey: String?
    }
    /// One request as it arrived and how it was answered.
    public struct Attempt: Sendable {
        public var path: String
        public var idempotencyKey: String?
        public var status: Int
        public var replayed: Bool
    }
    /// A scripted answer. `executed` answers (Stripe's 500s) are saved under the idempotency key and replayed.
    public struct Failure: Sendable {
        public var status: HTTPResponse.Status
        public var headers: HTTPFields = [.contentType: "application/json"]
        public var body: String
        public var executed: Bool

        public init(_ status: HTTPResponse.Status, _ body: String, headers: HTTPFields = [.contentType: "application/json"], executed: Bool? = nil) {
            self.status = status
            self.body = body
            self.headers = headers
            self.executed = executed ?? (status == .internalServerError)
        }
    }

    /// Requests that created something (replays are not counted).
    public let created = Mutex<[Request]>([])
    /// Every request, in order, with its answer.
    public let attempts = Mutex<[Attempt]>([])
    public var hits: Int { attempts.withLock { $0.count } }
    public let failures = Mutex<[Failure]>([])

    private struct Saved {
        var path: String
        var form: [String: String]
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: String
    }
    private let saved = Mutex<[String: Saved]>([:])
    private let executing = Mutex<Set<String>>([])
    private let objects = Mutex<[String: Value]>([:])

    private struct Hold {
        var armed = false
        var arrived = 0
        var released = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    private let holding = Mutex(Hold())

    public init(key: String = "sk_test_fake_0123", otherAccounts: [String] = []) {
        self.key = key
        accounts = [key] + otherAccounts
    }

    /// Parks the next creating request (its object made, its answer not yet saved nor sent) until `release()`.
    public func hold() { holding.withLock { $0.armed = true } }
    /// How many requests are parked or were parked.
    public var held: Int { holding.withLock { $0.arrived } }
    public func release() {
        let waiting = holding.withLock { h in
            defer { h.waiting = [] }
            h.released = h.arrived
            return h.waiting
        }
        for w in waiting { w.resume() }
    }

    public static func decodeForm(_ text: String) -> [String: String] {
        var form: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            guard let name = parts.first else { continue }
            form[name] = parts.count > 1 ? parts[1] : ""
        }
        return form
    }

    public var app: some ApplicationProtocol {
        let router = Router()
        for path in ["v1/checkout/sessions", "v1/prices", "v1/payment_links"] {
            router.post(RouterPath(path)) { request, _ -> Response in
                let idempotency = request.headers[HTTPField.Name("Idempotency-Key")!]
                let (response, replayed) = try await self.answer(path: path, request: request, idempotency: idempotency)
                self.attempts.withLock {
                    $0.append(Attempt(path: path, idempotencyKey: idempotency, status: Int(response.status.code), replayed: replayed))
                }
                return response
            }
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    private func answer(path: String, request: Hummingbird.Request, idempotency: String?) async throws -> (Response, replayed: Bool) {
        guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer "), accounts.contains(String(auth.dropFirst(7))) else {
            return (Self.error(.unauthorized, type: "invalid_request_error", code: nil, "Invalid API Key provided: sk_****"), false)
        }
        let account = String(auth.dropFirst(7))
        guard request.headers[.contentType] == "application/x-www-form-urlencoded" else {
            return (Self.error(.badRequest, type: "invalid_request_error", code: "parameter_unknown", "Invalid request"), false)
        }
        let form = Self.decodeForm(String(buffer: try await request.body.collect(upTo: 1 << 20)))
        let slot = idempotency.map { account + "\u{0}" + $0 }
        if let slot {
            if let earlier = saved.withLock({ $0[slot] }) {
                guard earlier.path == path else {
                    return (Self.error(.badRequest, type: "idempotency_error", code: nil,
                                       "Keys for idempotent requests can only be used for the same endpoint they were first used for."), false)
                }
                guard earlier.form == form else {
                    return (Self.error(.badRequest, type: "idempotency_error", code: nil,
                                       "Keys for idempotent requests can only be used with the same parameters they were first used with."), false)
                }
                var headers = earlier.headers
                headers[HTTPField.Name("Idempotent-Replayed")!] = "true"
                return (Response(status: earlier.status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: earlier.body))), true)
            }
            let busy = executing.withLock { !$0.insert(slot).inserted }
            if busy {
                return (Self.error(.conflict, type: "idempotency_error", code: "idempotency_key_in_use",
                                   "There is currently another in-progress request using this Idempotency-Key."), false)
            }
        }
        defer { if let slot { _ = executing.withLock { $0.remove(slot) } } }

        if let failure = failures.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            if failure.executed, let slot {
                saved.withLock { $0[slot] = Saved(path: path, form: form, status: failure.status, headers: failure.headers, body: failure.body) }
            }
            return (Response(status: failure.status, headers: failure.headers, body: .init(byteBuffer: ByteBuffer(string: failure.body))), false)
        }
        guard let object = make(path, form) else {
            return (Self.error(.badRequest, type: "invalid_request_error", code: "parameter_missing", "Missing required param"), false)
        }
        objects.withLock { $0[object["id"].text] = object }
        created.withLock { $0.append(Request(id: object["id"].text, account: account, path: path, form: form, idempotencyKey: idempotency)) }
        let ticket: Int? = holding.withLock { h in
            defer { h.armed = false }
            guard h.armed else { return nil }
            h.arrived += 1
            return h.arrived
        }
        if let ticket {
            await withCheckedContinuation { c in
                let go = holding.withLock { h in
                    if h.released >= ticket { return true }
                    h.waiting.append(c)
                    return false
                }
                if go { c.resume() }
            }
        }
        let headers: HTTPFields = [.contentType: "application/json"]
        if let slot { saved.withLock { $0[slot] = Saved(path: path, form: form, status: .ok, headers: headers, body: object.jsonText) } }
        return (Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: object.jsonText))), false)
    }

    /// The object a valid request creates, or nil when a required parameter is missing.
    private func make(_ path: String, _ form: [String: String]) -> Value? {
        switch path {
        case "v1/checkout/sessions":
            guard form["mode"] == "payment", form["success_url"] != nil, let amount = form["line_items[0][price_data][unit_amount]"].flatMap({ Int($0) }),
                  let currency = form["line_items[0][price_data][currency]"], currency.count == 3,
                  let quantity = Int(form["line_items[0][quantity]"] ?? "1") else { return nil }
            let id = "cs_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(24)
            return ["id": .string(id), "object": "checkout.session", "url": .string("https://checkout.stripe.com/c/pay/\(id)"),
                    "amount_total": .number(Double(amount * quantity)), "currency": .string(currency), "payment_status": "unpaid",
                    "status": "open", "client_reference_id": form["client_reference_id"].map(Value.string) ?? .null,
                    "customer_email": form["customer_email"].map(Value.string) ?? .null,
                    "metadata": Self.metadata(form, "metadata"), "payment_intent": .null, "payment_link": .null]
        case "v1/prices":
            guard form["unit_amount"] != nil, form["currency"] != nil, form["product_data[name]"] != nil else { return nil }
            return ["id": .string("price_" + UUID().uuidString.prefix(8)), "object": "price"]
        default:
            guard let price = form["line_items[0][price]"], objects.withLock({ $0[price] }) != nil else { return nil }
            let id = "plink_" + UUID().uuidString.prefix(8)
            return ["id": .string(id), "object": "payment_link", "url": .string("https://buy.stripe.com/test_\(id)"),
                    "metadata": Self.metadata(form, "metadata")]
        }
    }

    public static func metadata(_ form: [String: String], _ prefix: String) -> Value {
        var m: [String: Value] = [:]
        for (k, v) in form where k.hasPrefix(prefix + "[") && k.hasSuffix("]") && k.dropFirst(prefix.count + 1).firstIndex(of: "[") == nil {
            m[String(k.dropFirst(prefix.count + 1).dropLast())] = .string(v)
        }
        return .map(m)
    }

    /// The event Stripe sends when the session is paid (or, with `paid: false`, completed awaiting an async payment).
    public func completed(_ sessionID: String, paid: Bool = true, eventID: String = "evt_" + UUID().uuidString.prefix(12),
                   email: String = "ana@example.com") -> String {
        var session = objects.withLock { $0[sessionID] } ?? ["id": .string(sessionID), "metadata": [:]]
        if case .map(var m) = session {
            m["payment_status"] = paid ? "paid" : "unpaid"
            m["status"] = "complete"
            m["payment_intent"] = .string("pi_" + sessionID.suffix(8))
            m["customer_details"] = ["email": .string(email)]
            session = .map(m)
        }
        let event: Value = ["id": .string(eventID), "object": "event", "type": "checkout.session.completed",
                            "created": .number(Date().timeIntervalSince1970.rounded(.down)), "data": ["object": session]]
        return event.jsonText
    }

    /// `Stripe-Signature` for `payload`, computed here from Stripe's documented scheme (HMAC-SHA256 of `t.payload`),
    /// not with the product's own signer, so a mistake in one is not repeated in the other.
    public static func signature(_ payload: String, secret: String, time: Int64 = Int64(Date().timeIntervalSince1970)) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(time).\(payload)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "t=\(time),v1=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    public static func error(_ status: HTTPResponse.Status, type: String, code: String?, _ message: String) -> Response {
        var error: [String: Value] = ["type": .string(type), "message": .string(message)]
        if let code { error["code"] = .string(code) }
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: Value.map(["error": .map(error)]).jsonText)))
    }
}
