import FlowCompiler
import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The Server module's one public error: an HTTP problem (RFC 9457) with a stable `type` code and a message for
/// people. Never carries SQL, stack traces or secrets.
public struct Problem: Error, Sendable, HTTPResponseError {
    public enum Kind: String, Sendable {
        case badRequest = "bad_request"
        case unauthorized
        case forbidden
        case notFound = "not_found"
        case conflict
        case invalidFlow = "invalid_flow"
        case methodNotAllowed = "method_not_allowed"
        case tooLarge = "too_large"
        case tooManyRequests = "too_many_requests"
        case unavailable
        /// A service Flowline relies on (a sign-in provider) failed.
        case badGateway = "bad_gateway"
        case internalError = "internal_error"

        /// The kind of a status code another module chose (a channel driver's refusal); 400 for one it does not know.
        init(status: Int) {
            self = [Kind.badRequest, .unauthorized, .forbidden, .notFound, .conflict, .methodNotAllowed, .tooLarge, .tooManyRequests,
                    .unavailable, .badGateway, .internalError].first { Int($0.status.code) == status } ?? .badRequest
        }

        var status: HTTPResponse.Status {
            switch self {
            case .badRequest: .badRequest
            case .unauthorized: .unauthorized
            case .forbidden: .forbidden
            case .notFound: .notFound
            case .conflict: .conflict
            case .invalidFlow: .conflict
            case .methodNotAllowed: .methodNotAllowed
            case .tooLarge: .contentTooLarge
            case .tooManyRequests: .tooManyRequests
            case .unavailable: .serviceUnavailable
            case .badGateway: .badGateway
            case .internalError: .internalServerError
            }
        }
    }

    public var kind: Kind
    public var detail: String
    /// Extra members, e.g. `diagnostics`.
    public var extra: [String: Value]
    /// The `Allow` header of a 405.
    public var allow: String?
    /// Seconds for the `Retry-After` header of a 429 or 503.
    public var retryAfter: Int?

    public init(_ kind: Kind, _ detail: String, extra: [String: Value] = [:], allow: String? = nil, retryAfter: Int? = nil) {
        self.kind = kind
        self.detail = detail
        self.extra = extra
        self.allow = allow
        self.retryAfter = retryAfter
    }

    public var status: HTTPResponse.Status { kind.status }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var body = extra
        body["type"] = .string(kind.rawValue)
        body["title"] = .string(kind.status.reasonPhrase)
        body["status"] = .number(Double(kind.status.code))
        body["detail"] = .string(detail)
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let allow { headers[.allow] = allow }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(
            status: status,
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: Value.map(body).jsonText)))
    }
}

/// Turns every error into a problem response: known ones keep their code, anything else is an opaque 500 whose
/// details go to the log only.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = FlowlineRequestContext
    /// The routes, to tell "no such path" (404) from "not with this method" (405).
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let p as Problem {
            throw p
        } catch is NIOTooManyBytesError {
            throw Problem(.tooLarge, "the request body is larger than \(context.maxUploadSize) bytes")
        } catch let e as HTTPError {
            switch e.status {
            case .notFound:
                let allowed = routes.methods(for: request.uri.path)
                if !allowed.isEmpty {
                    throw Problem(.methodNotAllowed, "\(request.method.rawValue) is not allowed here; use \(allowed.joined(separator: ", "))",
                                  allow: allowed.joined(separator: ", "))
                }
                throw Problem(.notFound, "no such route")
            case .contentTooLarge: throw Problem(.tooLarge, "the request body is larger than \(context.maxUploadSize) bytes")
            case .methodNotAllowed: throw Problem(.notFound, "no such route for this method")
            default: throw Problem(.badRequest, e.body ?? "bad request")
            }
        } catch let e as EngineError {
            switch e.code {
            case .notFound: throw Problem(.notFound, e.message)
            case .conflict: throw Problem(.conflict, e.message)
            case .invalid: throw Problem(.badRequest, e.message)
            case .secret: throw Problem(.unavailable, e.message)
            }
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
            throw Problem(.internalError, "the server could not complete the request")
        }
    }
}

/// JSON responses from `Value`, with keys sorted so responses are stable.
func json(_ v: Value, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: v.jsonText)))
}

extension Request {
    /// Query parameter `name` as an ISO 8601 instant; nil when absent, a 400 when it is not one.
    func queryTime(_ name: String) throws -> Timestamp? {
        guard let v = uri.queryParameters[Substring(name)].map(String.init) else { return nil }
        guard let t = DataDocument.timestamp(v) else { throw Problem(.badRequest, "\(name) must be an ISO 8601 time") }
        return t
    }

    /// The body as text, up to the context's limit.
    func text(context: some RequestContext) async throws -> String {
        let buffer = try await body.collect(upTo: context.maxUploadSize)
        return String(buffer: buffer)
    }

    /// The body as a JSON object, or a 400 problem that says why: not JSON, a key given twice, or nested too deep.
    func jsonObject(context: some RequestContext) async throws -> [String: Value] {
        guard case .map(let m) = try Problem.json(try await text(context: context)) else {
            throw Problem(.badRequest, "the body must be a JSON object")
        }
        return m
    }
}

extension Problem {
    /// A request's JSON, strictly parsed; a 400 that says why it was refused.
    static func json(_ text: String) throws -> Value {
        switch Value.parse(json: text) {
        case .success(let v): return v
        case .failure(let problem): throw Problem(.badRequest, "the body is not acceptable JSON: \(problem)")
        }
    }
}

/// Checks on text that crosses the API boundary: what the server keeps is refused here, whole and with a reason,
/// rather than cut short or changed further in.
enum BodyText {
    /// A required identifier or address (a contact, a message id, a name): text of 1 to `max` characters without
    /// control characters, which would show one thing in a list and route to another (a NUL cut `"55\u0000x"` to
    /// contact `"55"`).
    static func identifier(_ body: [String: Value], _ key: String, max: Int, what: String? = nil) throws -> String {
        guard let s = try optionalIdentifier(body, key, max: max) else {
            throw Problem(.badRequest, "\(key) is required" + (what.map { ": \($0)" } ?? ""))
        }
        return s
    }

    /// The same when the key may be left out (nil); given, it must be text, and null is not.
    static func optionalIdentifier(_ body: [String: Value], _ key: String, max: Int, allowEmpty: Bool = false) throws -> String? {
        guard let value = body[key] else { return nil }
        guard case .string(let s) = value else {
            throw Problem(.badRequest, "\(key) must be text of \(allowEmpty ? 0 : 1) to \(max) characters")
        }
        return try identifier(s, key, max: max, allowEmpty: allowEmpty)
    }


    /// `identifier` for a field already decoded as text. Its length is counted in code points, as JSON Schema's
    /// `maxLength` in `/openapi.json` counts it, so the document and the server agree on every name.
    static func identifier(_ s: String, _ key: String, max: Int, allowEmpty: Bool = false) throws -> String {
        guard allowEmpty || !s.isEmpty, s.unicodeScalars.count <= max else {
            throw Problem(.badRequest, "\(key) must be text of \(allowEmpty ? 0 : 1) to \(max) characters")
        }
        guard !hasControlCharacters(s) else { throw Problem(.badRequest, "\(key) may not contain control characters") }
        return s
    }

    /// `identifier` for a path parameter, which the router hands over still percent-encoded (`/v1/queues/caf%C3%A9`
    /// names the queue `café`).
    static func pathIdentifier(_ context: FlowlineRequestContext, _ key: String, max: Int) throws -> String {
        guard let s = try context.parameters.require(key).removingPercentEncoding else {
            throw Problem(.badRequest, "\(key) in the path is not valid percent-encoded UTF-8")
        }
        return try identifier(s, key, max: max)
    }

    /// Free text (a message): any characters but NUL, which no database keeps in text.
    static func text(_ s: String, _ key: String) throws -> String {
        guard !s.utf8.contains(0) else { throw Problem(.badRequest, "\(key) may not contain the NUL character (\\u0000)") }
        return s
    }

    static func hasControlCharacters(_ s: String) -> Bool {
        s.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{2028}" || $0 == "\u{2029}" }
    }
}

/// The server's routes as path patterns, filled once the router is built.
final class RouteTable: @unchecked Sendable {
    private var patterns: [([Substring], String)] = []

    func load(_ routes: [(path: String, method: String)]) {
        patterns = routes.map { ($0.path.split(separator: "/"), $0.method) }
    }

    /// The methods some route accepts on this path.
    /// When several patterns match (`/webhooks/resume/{token}` and `/webhooks/{kind}/{id}`), the router takes the one
    /// whose literal segments come first, so only that one's methods are allowed.
    func methods(for path: String) -> [String] {
        let parts = path.split(separator: "/")
        func isParameter(_ p: Substring) -> Bool { p.hasPrefix(":") || p.hasPrefix("{") }
        let matching = patterns.filter { pattern, _ in
            pattern.count == parts.count && zip(pattern, parts).allSatisfy { p, x in isParameter(p) || p == x }
        }
        // The most specific: literal where the others have a parameter, earliest segment first.
        guard let best = matching.map({ $0.0.map { isParameter($0) ? 1 : 0 } }).min(by: { $0.lexicographicallyPrecedes($1) }) else { return [] }
        return Array(Set(matching.filter { $0.0.map { isParameter($0) ? 1 : 0 } == best }.map(\.1))).sorted()
    }
}
