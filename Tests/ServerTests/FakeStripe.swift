import Connectors
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// What localstripe lacks, written from Stripe's documented contract: Checkout Sessions, Prices and Payment
/// Links (form-encoded, bearer secret key), and `Idempotency-Key` replay: the same key with the same parameters
/// answers the first answer again; with other parameters, 400 `idempotency_error`. `failures` scripts error answers
/// for the next requests. `completed(_:)` builds the signed `checkout.session.completed` event Stripe would send.
final class FakeStripe: Sendable {
    let key: String
    struct Request: Sendable {
        var path: String
        var form: [String: String]
        var idempotencyKey: String?
    }
    /// Requests that created something (replays are not counted).
    let created = Mutex<[Request]>([])
    /// Every request, replays included.
    let hits = Mutex<Int>(0)
    let failures = Mutex<[(HTTPResponse.Status, HTTPFields, String)]>([])
    private let replies = Mutex<[String: (form: [String: String], answer: String)]>([:])
    private let objects = Mutex<[String: Value]>([:])

    init(key: String = "sk_test_fake_0123") {
        self.key = key
    }

    static func decodeForm(_ text: String) -> [String: String] {
        var form: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            form[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        return form
    }

    var app: some ApplicationProtocol {
        let router = Router()
        for path in ["v1/checkout/sessions", "v1/prices", "v1/payment_links"] {
            router.post(RouterPath(path)) { request, _ -> Response in
                self.hits.withLock { $0 += 1 }
                if let (status, headers, body) = self.failures.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
                }
                guard request.headers[.authorization] == "Bearer \(self.key)" else {
                    return Self.error(.unauthorized, type: "invalid_request_error", code: nil, "Invalid API Key provided: sk_****")
                }
                guard request.headers[.contentType] == "application/x-www-form-urlencoded" else {
                    return Self.error(.badRequest, type: "invalid_request_error", code: "parameter_unknown", "Invalid request")
                }
                let form = Self.decodeForm(String(buffer: try await request.body.collect(upTo: 1 << 20)))
                let idempotency = request.headers[HTTPField.Name("Idempotency-Key")!]
                if let idempotency, let earlier = self.replies.withLock({ $0[path + idempotency] }) {
                    guard earlier.form == form else {
                        return Self.error(.badRequest, type: "idempotency_error", code: nil,
                                          "Keys for idempotent requests can only be used with the same parameters they were first used with.")
                    }
                    return Response(status: .ok, headers: [.contentType: "application/json", HTTPField.Name("Idempotent-Replayed")!: "true"],
                                    body: .init(byteBuffer: ByteBuffer(string: earlier.answer)))
                }
                let object: Value
                switch path {
                case "v1/checkout/sessions":
                    guard form["mode"] == "payment", form["success_url"] != nil, let amount = form["line_items[0][price_data][unit_amount]"],
                          Int(amount) != nil, form["line_items[0][price_data][currency]"]?.count == 3 else {
                        return Self.error(.badRequest, type: "invalid_request_error", code: "parameter_missing", "Missing required param")
                    }
                    let id = "cs_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(24)
                    object = ["id": .string(id), "object": "checkout.session", "url": .string("https://checkout.stripe.com/c/pay/\(id)"),
                              "amount_total": .number(Double(Int(amount)! * Int(form["line_items[0][quantity]"] ?? "1")!)),
                              "currency": .string(form["line_items[0][price_data][currency]"]!), "payment_status": "unpaid",
                              "status": "open", "client_reference_id": form["client_reference_id"].map(Value.string) ?? .null,
                              "customer_email": form["customer_email"].map(Value.string) ?? .null,
                              "metadata": Self.metadata(form, "metadata"), "payment_intent": .null, "payment_link": .null]
                case "v1/prices":
                    guard form["unit_amount"] != nil, form["currency"] != nil, form["product_data[name]"] != nil else {
                        return Self.error(.badRequest, type: "invalid_request_error", code: "parameter_missing", "Missing required param")
                    }
                    object = ["id": .string("price_" + UUID().uuidString.prefix(8)), "object": "price"]
                default:
                    guard let price = form["line_items[0][price]"], self.objects.withLock({ $0[price] }) != nil else {
                        return Self.error(.badRequest, type: "invalid_request_error", code: "resource_missing", "No such price")
                    }
                    let id = "plink_" + UUID().uuidString.prefix(8)
                    object = ["id": .string(id), "object": "payment_link", "url": .string("https://buy.stripe.com/test_\(id)"),
                              "metadata": Self.metadata(form, "metadata")]
                }
                self.objects.withLock { $0[object["id"].text] = object }
                self.created.withLock { $0.append(Request(path: path, form: form, idempotencyKey: idempotency)) }
                if let idempotency { self.replies.withLock { $0[path + idempotency] = (form, object.jsonText) } }
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: object.jsonText)))
            }
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static func metadata(_ form: [String: String], _ prefix: String) -> Value {
        var m: [String: Value] = [:]
        for (k, v) in form where k.hasPrefix(prefix + "[") && k.hasSuffix("]") && k.dropFirst(prefix.count + 1).firstIndex(of: "[") == nil {
            m[String(k.dropFirst(prefix.count + 1).dropLast())] = .string(v)
        }
        return .map(m)
    }

    /// The event Stripe sends when the session is paid (or, with `paid: false`, completed awaiting an async payment).
    func completed(_ sessionID: String, paid: Bool = true, eventID: String = "evt_" + UUID().uuidString.prefix(12),
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

    static func error(_ status: HTTPResponse.Status, type: String, code: String?, _ message: String) -> Response {
        var error: [String: Value] = ["type": .string(type), "message": .string(message)]
        if let code { error["code"] = .string(code) }
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: Value.map(["error": .map(error)]).jsonText)))
    }
}
