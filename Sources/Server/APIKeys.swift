import Crypto
import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird

/// API keys: `fl_<prefix>_<secret>`. Only the prefix (to find the key) and the SHA-256 of the whole key are
/// stored; keys are 190-bit random strings, so a fast hash is the right one (no guessable password to stretch).
enum APIKeys {
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

    static func random(_ n: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return String((0..<n).map { _ in alphabet.randomElement(using: &g)! })
    }

    /// The SHA-256 (hex) of a random secret: an API key, a session id, a CSRF or link token. Their 190+ random bits
    /// need no stretching; a guessable password gets bcrypt instead (`People`).
    static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The shape of a key: `fl_<prefix>_<secret>`, prefix and secret of letters and digits, the secret at least 16
    /// long. What the server generates always has it; a key fixed from the environment is checked for it.
    static func isWellFormed(_ key: String) -> Bool {
        let parts = key.split(separator: "_", omittingEmptySubsequences: false)
        let safe: (Substring) -> Bool = { !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }
        return parts.count == 3 && parts[0] == "fl" && safe(parts[1]) && safe(parts[2]) && parts[2].count >= 16
    }

    /// Creates and stores a key; returns the key itself, which is shown once and never again.
    static func create(store: any TenantRecords, tenant: String, role: Caller.Role, label: String, fixed: String? = nil) async throws
        -> (key: String, record: APIKeyRecord)
    {
        let key = fixed ?? "fl_\(random(10))_\(random(32))"
        guard isWellFormed(key) else { throw Problem(.badRequest, "an API key looks like fl_<prefix>_<secret>") }
        let parts = key.split(separator: "_")
        let record = APIKeyRecord(id: UUID().uuidString.lowercased(), tenant: tenant, role: role.rawValue, prefix: String(parts[1]),
                                           hash: hash(key), label: label, createdAt: Timestamp(Date()), revoked: false)
        try await store.insertAPIKey(record)
        return (key, record)
    }

    /// Constant-time comparison of two hex digests of equal length.
    static func equal(_ a: String, _ b: String) -> Bool {
        SecretBox.constantTimeEqual(Array(a.utf8), Array(b.utf8))
    }
}

/// Authenticates `Authorization: Bearer <key>` (machines) or the session cookie of a signed-in person, and puts the
/// caller in the context; 401 otherwise. A cookie's unsafe requests must carry the session's CSRF token.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = FlowlineRequestContext
    static let platformRoute = "/v1/tenants"
    let store: any TenantRecords & PeopleRecords
    let now: @Sendable () -> Timestamp

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            if let caller = try await People.caller(of: request, store: store, now: now()) {
                var context = context
                context.caller = caller
                context.logger[metadataKey: "tenant"] = "\(caller.tenant)"
                context.logger[metadataKey: "user"] = "\(caller.keyID)"
                return try await next(request, context)
            }
            throw Problem(.unauthorized, "send Authorization: Bearer <API key>, or sign in")
        }
        let key = String(header.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)
        let parts = key.split(separator: "_")
        guard parts.count == 3, parts[0] == "fl", let record = try await store.apiKey(prefix: String(parts[1])),
              APIKeys.equal(record.hash, APIKeys.hash(key)), let role = Caller.Role(rawValue: record.role)
        else {
            throw Problem(.unauthorized, "missing or invalid API key")
        }
        // The platform key creates tenants and nothing else: on a tenant's routes it would read as a tenant of its own.
        if role == .platform, !(request.method == .post && request.uri.path == AuthMiddleware.platformRoute) {
            throw Problem(.forbidden, "the platform key may only create tenants (POST \(AuthMiddleware.platformRoute))")
        }
        var context = context
        context.caller = Caller(tenant: record.tenant, role: role, keyID: record.id)
        context.logger[metadataKey: "tenant"] = "\(record.tenant)"
        context.logger[metadataKey: "key"] = "\(record.id)"
        return try await next(request, context)
    }
}
