import AsyncHTTPClient
import Crypto
import FlowEngine
import FlowVM
import Foundation
import NIOCore

/// `http.request`, the action behind the `webhook:` block: calls any HTTP endpoint with the flow's data.
///
/// The method defaults to POST when there is a body and GET otherwise. The body is sent as JSON, or as a form
/// when the flow sets `Content-Type: application/x-www-form-urlencoded`. Every request carries
/// `Idempotency-Key` (stable across retries) and, when a signing secret is configured,
/// `Flowline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>` so receivers can verify us (after
/// a rotation, for a day, a second `v1` by the secret it replaced: a receiver accepts any `v1` it can check).
///
/// 2xx answers `{status, headers, body}` (the body parsed when it is JSON, else text). 408, 425, 429 and 5xx,
/// timeouts and refused connections are retried, honouring `Retry-After`; other statuses go to `on_error`
/// with `error.code` `http_<status>`.
public struct HTTPWebhookConnector: Connector {
    private let signingSecret: String?
    private let retiringSecret: String?

    /// - Parameters:
    ///   - signingSecret: signs every request when set (`FLOWLINE_WEBHOOK_SIGNING_SECRET`).
    ///   - retiringSecret: a rotated-out secret that signs too, as a second `v1` (Stripe's way during a roll), so a
    ///     receiver still holding it accepts the request.
    public init(signingSecret: String? = nil, retiringSecret: String? = nil) {
        self.signingSecret = signingSecret
        self.retiringSecret = signingSecret == nil ? nil : retiringSecret
    }

    public var definitions: [ActionDefinition] { Self.actions }

    static let maxResponse = 1 << 20

    public func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard case .string(let urlText) = parameters["url"], var url = URLComponents(string: urlText),
              ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host?.isEmpty == false else {
            throw ConnectorError(code: "invalid_url", message: "the webhook URL must be an http or https URL", retryable: false)
        }
        if case .map(let query) = parameters["query"], !query.isEmpty {
            url.queryItems = (url.queryItems ?? []) + query.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: Self.text($0.value)) }
        }
        var headers: [(String, String)] = []
        if case .map(let h) = parameters["headers"] {
            for (name, value) in h.sorted(by: { $0.key < $1.key }) { headers.append((name, Self.text(value))) }
        }
        let contentType = headers.first { $0.0.lowercased() == "content-type" }?.1.lowercased()
        var body: [UInt8]?
        if parameters["body"] != .null {
            if contentType?.hasPrefix("application/x-www-form-urlencoded") == true {
                guard case .map(let fields) = parameters["body"] else {
                    throw ConnectorError(code: "invalid_body", message: "a form body must be a map of fields", retryable: false)
                }
                var form = URLComponents()
                form.queryItems = fields.sorted { $0.key < $1.key }.map { URLQueryItem(name: $0.key, value: Self.text($0.value)) }
                body = Array((form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B").utf8)
            } else {
                body = Array(parameters["body"].jsonText.utf8)
                if contentType == nil { headers.append(("Content-Type", "application/json")) }
            }
        }
        let method = parameters["method"].text.isEmpty ? (body == nil ? "GET" : "POST") : parameters["method"].text.uppercased()

        guard let urlString = url.string else {
            throw ConnectorError(code: "invalid_url", message: "the webhook URL must be an http or https URL", retryable: false)
        }
        var request = HTTPClientRequest(url: urlString)
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.add(name: "User-Agent", value: "Flowline")
        request.headers.add(name: "Idempotency-Key", value: context.idempotencyKey)
        if let signingSecret {
            let time = Int64(Date().timeIntervalSince1970)
            var value = Self.signature(body: body ?? [], secret: signingSecret, time: time)
            if let retiringSecret { value += ",v1=" + Self.mac(body: body ?? [], secret: retiringSecret, time: time) }
            request.headers.add(name: "Flowline-Signature", value: value)
        }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }

        // The block's own `timeout:` may be shorter than the engine's deadline.
        var attempt = context
        if case .string(let t) = parameters["timeout"], let seconds = DurationParser.seconds(t) {
            attempt.deadline = min(context.deadline, .now + .seconds(seconds))
        }
        let (response, bytes) = try await attempt.send(request, to: "the webhook", limit: Self.maxResponse)
        let status = Int(response.status.code)
        switch status {
        case 200..<300:
            var answerHeaders: [String: Value] = [:]
            for h in response.headers { answerHeaders[h.name.lowercased()] = .string(h.value) }
            let text = String(buffer: bytes)
            let isJSON = response.headers.first(name: "Content-Type")?.lowercased().contains("json") == true
            return ["status": .number(Double(status)), "headers": .map(answerHeaders),
                    "body": isJSON ? (Value(json: text) ?? .string(text)) : (text.isEmpty ? .null : .string(text))]
        case 408, 425, 429, 500...:
            throw ConnectorError(code: "http_\(status)", message: "the webhook answered \(status)", retryable: true,
                                 retryAfter: Self.retryAfter(response.headers.first(name: "Retry-After"), now: Date()))
        default:
            throw ConnectorError(code: "http_\(status)", message: "the webhook answered \(status)", retryable: false)
        }
    }

    /// Seconds to wait from a `Retry-After` header: a number of seconds or an HTTP date (RFC 9110).
    public static func retryAfter(_ header: String?, now: Date) -> Int64? {
        guard let header = header?.trimmingCharacters(in: .whitespaces), !header.isEmpty else { return nil }
        if let seconds = Int64(header) { return max(0, seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: header) else { return nil }
        return max(0, Int64(date.timeIntervalSince(now).rounded(.up)))
    }

    /// A parameter as header, query or form text.
    static func text(_ v: Value) -> String {
        if case .string(let s) = v { return s }
        return v.jsonText
    }

    /// `t=<time>,v1=<hex HMAC-SHA256(secret, "time.body")>`, the scheme of `api` channel callbacks too.
    public static func signature(body: [UInt8], secret: String, time: Int64) -> String {
        "t=\(time),v1=" + mac(body: body, secret: secret, time: time)
    }

    /// The hex HMAC-SHA256 of `time.body` under `secret`: one `v1` value.
    static func mac(body: [UInt8], secret: String, time: Int64) -> String {
        HMAC<SHA256>.authenticationCode(for: Array("\(time).".utf8) + body, using: SymmetricKey(data: Data(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }
}

extension HTTPWebhookConnector {
    /// The actions it performs, with their JSON Schemas.
    public static let actions: [ActionDefinition] = [
        ActionDefinition(
            name: "http.request",
            summary: "Call an HTTP endpoint (webhook:)",
            parameters: ActionSchema.object([
                "url": ActionSchema.nonEmpty,
                "method": ["type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]],
                "headers": ActionSchema.anyObject,
                "query": ActionSchema.anyObject,
                "body": [:],
                "timeout": ["type": "string", "format": "duration"],
            ], required: ["url"]),
            result: ActionSchema.object(["status": ["type": "integer"], "body": [:], "headers": ActionSchema.anyObject])
        ),
    ]
}
