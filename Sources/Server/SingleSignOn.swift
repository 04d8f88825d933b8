import AsyncHTTPClient
import Crypto
import FlowVM
import Foundation
import JWTKit
import NIOCore
import Synchronization

/// An OpenID Connect provider people may sign in with: Google, or any other (`FLOWLINE_OIDC_<NAME>_*`, README.md).
public struct OIDCProvider: Sendable, Hashable {
    /// In the routes: `/v1/sso/{name}` (lower-case letters, digits and `-`).
    public var name: String
    /// What a sign-in page shows: "Google", "Acme SSO".
    public var label: String
    /// The issuer identifier, whose `/.well-known/openid-configuration` describes the rest.
    public var issuer: String
    public var clientID: String
    public var clientSecret: String

    public init(name: String, label: String? = nil, issuer: String, clientID: String, clientSecret: String) {
        self.name = name
        self.label = label ?? name.prefix(1).uppercased() + name.dropFirst()
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
    }

    /// The providers an environment names: `FLOWLINE_OIDC_PROVIDERS=google,acme`, and for each
    /// `FLOWLINE_OIDC_<NAME>_CLIENT_ID`, `_CLIENT_SECRET`, `_ISSUER` (Google's by default for `google`) and `_LABEL`.
    /// What is missing is left empty, for `ServerConfiguration.validate` to name.
    public static func providers(environment env: [String: String]) -> [OIDCProvider] {
        (env["FLOWLINE_OIDC_PROVIDERS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { name in
            let prefix = environmentPrefix(name)
            return OIDCProvider(name: name, label: env[prefix + "LABEL"], issuer: env[prefix + "ISSUER"] ?? (name == "google" ? googleIssuer : ""),
                                clientID: env[prefix + "CLIENT_ID"] ?? "", clientSecret: env[prefix + "CLIENT_SECRET"] ?? "")
        }
    }

    /// `FLOWLINE_OIDC_<NAME>_`: the name upper-cased, `-` as `_`.
    static func environmentPrefix(_ name: String) -> String { "FLOWLINE_OIDC_" + name.uppercased().replacingOccurrences(of: "-", with: "_") + "_" }

    /// Google's issuer.
    public static let googleIssuer = "https://accounts.google.com"

    /// The `iss` values an ID token may carry: the issuer; Google's tokens also name it without the scheme.
    var issuers: Set<String> { issuer == Self.googleIssuer ? [issuer, "accounts.google.com"] : [issuer] }

    /// Why this provider cannot be used, if it cannot: a clear line for `serve` to refuse to start with.
    func problem() -> String? {
        guard name.range(of: "^[a-z0-9-]{1,32}$", options: .regularExpression) != nil else {
            return "a single sign-on provider's name is 1 to 32 lower-case letters, digits or '-', not '\(name)'"
        }
        guard SingleSignOn.trusted(issuer) else {
            return "\(Self.environmentPrefix(name))ISSUER must be an https URL (http only on loopback), not '\(issuer)'"
        }
        if clientID.isEmpty { return "\(Self.environmentPrefix(name))CLIENT_ID is missing" }
        if clientSecret.isEmpty { return "\(Self.environmentPrefix(name))CLIENT_SECRET is missing" }
        return nil
    }
}

/// OpenID Connect's authorization code flow with PKCE, for people signing in through their provider.
///
/// The server keeps each sign-in it starts (its `state`, by hash, single-use, for ten minutes) with its `nonce` and
/// PKCE verifier; the browser that started it carries the `state` in a cookie, so a callback in another browser (a
/// link an attacker hands out) is refused. The ID token's signature is checked against the provider's JWKS, and its
/// issuer, audience, expiry and nonce against what this sign-in expects; a person is matched by verified email.
final class SingleSignOn: Sendable {
    /// Where a provider says its endpoints are.
    struct Discovery: Decodable, Sendable {
        var issuer: String
        var authorizationEndpoint: String
        var tokenEndpoint: String
        var jwksURI: String
        var tokenEndpointAuthMethods: [String]?

        enum CodingKeys: String, CodingKey {
            case issuer
            case authorizationEndpoint = "authorization_endpoint"
            case tokenEndpoint = "token_endpoint"
            case jwksURI = "jwks_uri"
            case tokenEndpointAuthMethods = "token_endpoint_auth_methods_supported"
        }
    }

    /// The claims of an ID token that Flowline reads.
    struct IDToken: JWTIdentityToken {
        var issuer: IssuerClaim
        var subject: SubjectClaim
        var audience: AudienceClaim
        var expires: ExpirationClaim
        var issuedAt: IssuedAtClaim
        var authorizedParty: String?
        var nonce: String?
        var email: String?
        var emailVerified: BoolClaim?
        var name: String?

        enum CodingKeys: String, CodingKey {
            case issuer = "iss", subject = "sub", audience = "aud", expires = "exp", issuedAt = "iat", authorizedParty = "azp"
            case nonce, email, name
            case emailVerified = "email_verified"
        }

        func verify(using _: some JWTAlgorithm) throws {
            try expires.verifyNotExpired()
        }
    }

    /// A failed sign-in, with what went wrong in words that hold no token.
    struct Refusal: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// What a provider's discovery and keys were, kept for an hour; keys are fetched again (at most once a minute)
    /// when a token names a key not in them, as after the provider rotates its keys.
    struct Known {
        var discovery: Discovery
        var keys: JWKS
        var fetchedAt: ContinuousClock.Instant
        var keysFetchedAt: ContinuousClock.Instant
    }

    let providers: [String: OIDCProvider]
    private let known = Mutex<[String: Known]>([:])
    private let client: HTTPClient
    static let timeout: TimeAmount = .seconds(10)
    /// The most a provider's answer may hold.
    static let maxAnswer = 256 * 1024
    /// The signing algorithms accepted (never `none`, never a shared-secret HMAC).
    static let algorithms: Set<String> = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]

    init(providers: [OIDCProvider], client: HTTPClient = .shared) {
        self.providers = Dictionary(providers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.client = client
    }

    /// Whether a provider's URL may be trusted with sign-ins: https, or http on a loopback address (tests, a
    /// provider on the same machine).
    static func trusted(_ url: String) -> Bool {
        guard let c = URLComponents(string: url), let host = c.host, !host.isEmpty else { return false }
        if c.scheme == "https" { return true }
        return c.scheme == "http" && ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host)
    }

    // MARK: - Talking to the provider

    private func get(_ url: String) async throws -> ByteBuffer {
        guard Self.trusted(url) else { throw Refusal("the provider named an endpoint that is not https") }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(HTTPClientRequest(url: url), timeout: Self.timeout)
        } catch {
            throw Refusal("the provider could not be reached")
        }
        guard response.status == .ok else { throw Refusal("the provider answered \(response.status.code)") }
        do { return try await response.body.collect(upTo: Self.maxAnswer) } catch { throw Refusal("the provider's answer is too large") }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer, _ what: String) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: Data(buffer: body)) } catch { throw Refusal("the provider's \(what) is not valid") }
    }

    /// The provider's discovery document and keys, fetched once an hour, or again when `refreshKeys`.
    private func known(_ p: OIDCProvider, refreshKeys: Bool = false) async throws -> Known {
        let now = ContinuousClock.now
        if let k = known.withLock({ $0[p.name] }), now - k.fetchedAt < .seconds(3600) {
            guard refreshKeys, now - k.keysFetchedAt > .seconds(60) else { return k }
            var renewed = k
            renewed.keys = try decode(JWKS.self, try await get(k.discovery.jwksURI), "key set")
            renewed.keysFetchedAt = now
            known.withLock { $0[p.name] = renewed }
            return renewed
        }
        let base = p.issuer.hasSuffix("/") ? String(p.issuer.dropLast()) : p.issuer
        let discovery = try decode(Discovery.self, try await get(base + "/.well-known/openid-configuration"), "discovery document")
        // OpenID Connect Discovery §4.3: the document's issuer is the one asked about, exactly.
        guard discovery.issuer == p.issuer else { throw Refusal("the provider's discovery document names another issuer") }
        let keys = try decode(JWKS.self, try await get(discovery.jwksURI), "key set")
        let k = Known(discovery: discovery, keys: keys, fetchedAt: now, keysFetchedAt: now)
        known.withLock { $0[p.name] = k }
        return k
    }

    /// A sign-in started: where to send the browser, and what the callback must find.
    struct Start: Sendable {
        var url: String
        var state: String
        var nonce: String
        var verifier: String
    }

    /// The authorization request for `provider`, with a fresh state, nonce and PKCE verifier (S256).
    func start(_ p: OIDCProvider, redirectURI: String) async throws -> Start {
        let k = try await known(p)
        let state = APIKeys.random(32), nonce = APIKeys.random(32), verifier = APIKeys.random(64)
        guard var url = URLComponents(string: k.discovery.authorizationEndpoint), Self.trusted(k.discovery.authorizationEndpoint) else {
            throw Refusal("the provider's authorization endpoint is not usable")
        }
        url.queryItems = (url.queryItems ?? []) + [
            URLQueryItem(name: "response_type", value: "code"),
            URLQueryItem(name: "client_id", value: p.clientID),
            URLQueryItem(name: "redirect_uri", value: redirectURI),
            URLQueryItem(name: "scope", value: "openid email profile"),
            URLQueryItem(name: "state", value: state),
            URLQueryItem(name: "nonce", value: nonce),
            URLQueryItem(name: "code_challenge", value: Self.challenge(verifier)),
            URLQueryItem(name: "code_challenge_method", value: "S256"),
        ]
        guard let text = url.string else { throw Refusal("the provider's authorization endpoint is not usable") }
        return Start(url: text, state: state, nonce: nonce, verifier: verifier)
    }

    /// PKCE's S256 challenge (RFC 7636 §4.2): base64url of SHA-256 of the verifier, unpadded.
    static func challenge(_ verifier: String) -> String {
        base64URL(Data(SHA256.hash(data: Data(verifier.utf8))))
    }

    static func base64URL(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Exchanges the callback's code for an ID token and checks it: the identity the provider vouches for.
    func finish(_ p: OIDCProvider, code: String, redirectURI: String, verifier: String, nonce: String) async throws -> IDToken {
        let k = try await known(p)
        guard Self.trusted(k.discovery.tokenEndpoint) else { throw Refusal("the provider named an endpoint that is not https") }
        var form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI), ("code_verifier", verifier)]
        var request = HTTPClientRequest(url: k.discovery.tokenEndpoint)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        // client_secret_basic unless the provider takes only client_secret_post (RFC 6749 §2.3.1: basic is the default).
        let methods = k.discovery.tokenEndpointAuthMethods ?? ["client_secret_basic"]
        if methods.contains("client_secret_basic") || !methods.contains("client_secret_post") {
            let pair = Self.formEscaped(p.clientID) + ":" + Self.formEscaped(p.clientSecret)
            request.headers.add(name: "Authorization", value: "Basic " + Data(pair.utf8).base64EncodedString())
        } else {
            form += [("client_id", p.clientID), ("client_secret", p.clientSecret)]
        }
        request.body = .bytes(ByteBuffer(string: form.map { Self.formEscaped($0.0) + "=" + Self.formEscaped($0.1) }.joined(separator: "&")))
        let response: HTTPClientResponse
        do { response = try await client.execute(request, timeout: Self.timeout) } catch { throw Refusal("the provider could not be reached") }
        let body: ByteBuffer
        do { body = try await response.body.collect(upTo: Self.maxAnswer) } catch { throw Refusal("the provider's answer is too large") }
        struct TokenAnswer: Decodable {
            var idToken: String?
            var error: String?
            enum CodingKeys: String, CodingKey { case idToken = "id_token", error }
        }
        let answer = try decode(TokenAnswer.self, body, "token answer")
        guard response.status == .ok, let idToken = answer.idToken else {
            throw Refusal("the provider refused the code (\(answer.error.map(Self.errorWord) ?? "\(response.status.code)"))")
        }
        return try await verify(idToken, p, nonce: nonce, known: k)
    }

    /// The ID token's claims, once its signature, issuer, audience, expiry and nonce hold.
    func verify(_ token: String, _ p: OIDCProvider, nonce: String, known k: Known? = nil) async throws -> IDToken {
        let header = try Self.header(token)
        guard let alg = header.alg, Self.algorithms.contains(alg) else { throw Refusal("the ID token is not signed with an accepted algorithm") }
        var k = if let k { k } else { try await known(p) }
        if let kid = header.kid, k.keys.find(identifier: kid) == nil { k = try await known(p, refreshKeys: true) }
        let keys = JWTKeyCollection()
        for jwk in k.keys.keys where jwk.keyIdentifier != nil {
            // A key Flowline cannot use (an encryption key, an unknown type) is skipped, not fatal.
            _ = try? await keys.add(jwk: jwk)
        }
        let claims: IDToken
        do {
            claims = try await keys.verify(token, as: IDToken.self, expectedAudience: p.clientID)
        } catch let e as JWTError {
            switch e.errorType {
            case .claimVerificationFailure:
                throw Refusal(e.reason?.contains("expired") == true ? "the ID token has expired" : "the ID token was issued for another application")
            default: throw Refusal("the ID token's signature does not match the provider's keys")
            }
        } catch {
            throw Refusal("the ID token's signature does not match the provider's keys")
        }
        guard p.issuers.contains(claims.issuer.value) else { throw Refusal("the ID token was issued by another issuer") }
        if let azp = claims.authorizedParty, azp != p.clientID { throw Refusal("the ID token was issued for another application") }
        guard let got = claims.nonce, APIKeys.equal(got, nonce) else { throw Refusal("the ID token's nonce is not this sign-in's") }
        // Issued in the future (beyond a few minutes of clock skew) is as wrong as expired.
        guard claims.issuedAt.value < Date().addingTimeInterval(300) else { throw Refusal("the ID token was issued in the future") }
        return claims
    }

    /// A JWT's header fields that choose the key, read by jwt-kit's parser (nothing is trusted until verified).
    static func header(_ token: String) throws -> (alg: String?, kid: String?) {
        guard let parsed = try? DefaultJWTParser().parse([UInt8](token.utf8), as: IDToken.self) else { throw Refusal("the ID token is not a JWT") }
        return (parsed.header.alg, parsed.header.kid)
    }

    /// A provider's error code (RFC 6749 §5.2, `access_denied`) when it is one fixed word, safe to repeat in an
    /// answer or a log; `error` otherwise.
    static func errorWord(_ s: String) -> String {
        s.count <= 64 && s.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0 == "_") }) ? s : "error"
    }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// `application/x-www-form-urlencoded` escaping: everything but unreserved characters.
    static func formEscaped(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: unreserved) ?? s
    }
}
