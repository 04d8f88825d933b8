import Crypto
import CryptoExtras
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import NIOCore
import Synchronization

/// An OpenID Connect provider, written from OpenID Connect Core 1.0, Discovery 1.0, RFC 6749 and RFC 7636 (PKCE):
/// a discovery document, a JWKS, an authorization endpoint and a token endpoint, signing ID tokens with a real
/// RS256 key. As strict as a real provider: an unknown client or an unregistered `redirect_uri` is a 400 shown to
/// the person (never a redirect); the token endpoint wants the registered client's secret (basic or post), the same
/// `redirect_uri`, and the PKCE verifier of the challenge; a code works once, for a minute.
///
/// Who signs in at `/authorize` is `signedIn` (nil: the person declines, `error=access_denied`). `forgery` makes the
/// next ID tokens wrong in one way, as an attacker or a misconfigured provider would: signed by another key, for
/// another audience or issuer, expired, with another nonce, or not signed at all.
public final class FakeOIDC: Sendable {
    public struct Person: Sendable {
        public var email: String
        public var verified: Bool
        public var name: String
        public var subject: String
        public init(email: String, verified: Bool = true, name: String = "Someone", subject: String = UUID().uuidString) {
            self.email = email
            self.verified = verified
            self.name = name
            self.subject = subject
        }
    }

    public enum Forgery: Sendable {
        case none, wrongKey, wrongAudience, wrongIssuer, expired, wrongNonce, unsigned
    }

    private struct Grant {
        var clientID: String
        var redirectURI: String
        var challenge: String
        var nonce: String?
        var person: Person
        var expires: Date
    }

    struct Claims: JWTPayload {
        var iss: String
        var sub: String
        var aud: String
        var azp: String
        var exp: Int
        var iat: Int
        var nonce: String?
        var email: String
        var email_verified: Bool
        var name: String
        func verify(using _: some JWTAlgorithm) throws {}
    }

    public let clientID: String
    public let clientSecret: String
    public let redirectURIs: Set<String>
    /// `http://127.0.0.1:<port>`, once it listens (`listening(port:)`).
    public let issuer = Mutex<String>("")
    public let signedIn = Mutex<Person?>(nil)
    public let forgery = Mutex<Forgery>(.none)
    /// How many codes were exchanged for tokens.
    public let exchanges = Mutex(0)
    private let codes = Mutex<[String: Grant]>([:])
    private let keys: JWTKeyCollection
    private let strangerKeys: JWTKeyCollection
    private let jwks: String
    static let kid = "fake-oidc-1"

    public init(clientID: String, clientSecret: String, redirectURIs: Set<String>) async throws {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURIs = redirectURIs
        let key = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        let stranger = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        keys = await JWTKeyCollection().add(rsa: key, digestAlgorithm: .sha256, kid: JWKIdentifier(string: Self.kid))
        // Another key under the same key id: a token it signs names a key the provider has, and must still fail.
        strangerKeys = await JWTKeyCollection().add(rsa: stranger, digestAlgorithm: .sha256, kid: JWKIdentifier(string: Self.kid))
        let (n, e) = try key.publicKey.getKeyPrimitives()
        jwks = Value.map(["keys": .list([.map([
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": .string(Self.kid),
            "n": .string(Self.base64URL(n)), "e": .string(Self.base64URL(e)),
        ])])]).jsonText
    }

    static func base64URL(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Records the port it listens on, which makes its issuer.
    public func listening(port: Int) { issuer.withLock { $0 = "http://127.0.0.1:\(port)" } }

    public var app: some ApplicationProtocol {
        let router = Router()
        router.get(".well-known/openid-configuration") { _, _ -> Response in
            let iss = self.issuer.withLock { $0 }
            return Self.json(.ok, [
                "issuer": .string(iss), "authorization_endpoint": .string(iss + "/authorize"), "token_endpoint": .string(iss + "/token"),
                "jwks_uri": .string(iss + "/jwks"), "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"], "scopes_supported": ["openid", "email", "profile"],
            ])
        }
        router.get("jwks") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: self.jwks)))
        }
        router.get("authorize") { request, _ -> Response in
            let q = request.uri.queryParameters
            // RFC 6749 §4.1.2.1: a bad client or redirect URI is told to the person, never redirected.
            guard q["client_id"].map(String.init) == self.clientID else { return Self.text(.badRequest, "unknown client") }
            guard let redirect = q["redirect_uri"].map(String.init), self.redirectURIs.contains(redirect) else {
                return Self.text(.badRequest, "redirect_uri is not registered for this client")
            }
            func back(_ items: [URLQueryItem]) -> Response {
                var c = URLComponents(string: redirect)!
                c.queryItems = items + (q["state"].map { [URLQueryItem(name: "state", value: String($0))] } ?? [])
                return Response(status: .found, headers: [.location: c.string!])
            }
            guard q["response_type"] == "code" else { return back([URLQueryItem(name: "error", value: "unsupported_response_type")]) }
            guard let scope = q["scope"], scope.split(separator: " ").contains("openid") else {
                return back([URLQueryItem(name: "error", value: "invalid_scope")])
            }
            guard q["code_challenge_method"] == "S256", let challenge = q["code_challenge"].map(String.init), challenge.count == 43 else {
                return back([URLQueryItem(name: "error", value: "invalid_request")])
            }
            guard let person = self.signedIn.withLock({ $0 }) else { return back([URLQueryItem(name: "error", value: "access_denied")]) }
            let code = UUID().uuidString
            self.codes.withLock {
                $0[code] = Grant(clientID: self.clientID, redirectURI: redirect, challenge: challenge, nonce: q["nonce"].map(String.init), person: person,
                                 expires: Date() + 60)
            }
            return back([URLQueryItem(name: "code", value: code)])
        }
        router.post("token") { request, _ -> Response in
            var form: [String: String] = [:]
            for pair in String(buffer: try await request.body.collect(upTo: 64 * 1024)).split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
                if kv.count == 2 { form[kv[0]] = kv[1] }
            }
            // Client authentication: HTTP Basic of the form-encoded id and secret, or both in the body; not both.
            var client: (id: String, secret: String)?
            if let auth = request.headers[.authorization], auth.hasPrefix("Basic "),
               let decoded = Data(base64Encoded: String(auth.dropFirst(6))).map({ String(decoding: $0, as: UTF8.self) }) {
                let parts = decoded.split(separator: ":", maxSplits: 1).map { String($0).removingPercentEncoding ?? "" }
                if parts.count == 2 { client = (parts[0], parts[1]) }
                if form["client_secret"] != nil { return Self.json(.badRequest, ["error": "invalid_request"]) }
            } else if let id = form["client_id"], let secret = form["client_secret"] {
                client = (id, secret)
            }
            guard let client, client.id == self.clientID, client.secret == self.clientSecret else {
                return Self.json(.unauthorized, ["error": "invalid_client"])
            }
            guard form["grant_type"] == "authorization_code" else { return Self.json(.badRequest, ["error": "unsupported_grant_type"]) }
            // A code is spent by its first exchange, good or bad (RFC 6749 §4.1.2: used once).
            guard let code = form["code"], let grant = self.codes.withLock({ $0.removeValue(forKey: code) }), grant.expires > Date(),
                  grant.clientID == client.id, form["redirect_uri"] == grant.redirectURI,
                  let verifier = form["code_verifier"], (43...128).contains(verifier.count),
                  Self.base64URL(Data(SHA256.hash(data: Data(verifier.utf8)))) == grant.challenge else {
                return Self.json(.badRequest, ["error": "invalid_grant"])
            }
            self.exchanges.withLock { $0 += 1 }
            let now = Int(Date().timeIntervalSince1970)
            let forgery = self.forgery.withLock { $0 }
            let iss = self.issuer.withLock { $0 }
            let claims = Claims(iss: forgery == .wrongIssuer ? "http://127.0.0.1:1" : iss, sub: grant.person.subject,
                                aud: forgery == .wrongAudience ? "another-app" : grant.clientID, azp: forgery == .wrongAudience ? "another-app" : grant.clientID,
                                exp: forgery == .expired ? now - 600 : now + 3600, iat: forgery == .expired ? now - 4200 : now,
                                nonce: forgery == .wrongNonce ? "not-the-nonce" : grant.nonce, email: grant.person.email,
                                email_verified: grant.person.verified, name: grant.person.name)
            let idToken: String
            switch forgery {
            case .wrongKey: idToken = try await self.strangerKeys.sign(claims, kid: JWKIdentifier(string: Self.kid))
            case .unsigned:
                let header = Self.base64URL(Data(#"{"alg":"none","kid":"\#(Self.kid)"}"#.utf8))
                idToken = header + "." + Self.base64URL(try JSONEncoder().encode(claims)) + "."
            default: idToken = try await self.keys.sign(claims, kid: JWKIdentifier(string: Self.kid))
            }
            return Self.json(.ok, ["access_token": .string(UUID().uuidString), "token_type": "Bearer", "expires_in": 3600,
                                   "id_token": .string(idToken), "scope": "openid email profile"])
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static func json(_ status: HTTPResponse.Status, _ v: Value) -> Response {
        Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: v.jsonText)))
    }

    static func text(_ status: HTTPResponse.Status, _ s: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }
}
