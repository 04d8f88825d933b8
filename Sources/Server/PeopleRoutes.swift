import FlowEngine
import FlowVM
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdBcrypt
import NIOPosix
import Synchronization

/// People who sign in: the first admin's setup, and sessions (`/v1/session`), alongside API keys for machines.
///
/// Passwords are bcrypt-hashed (off the request threads); a session is a random cookie kept server-side by its
/// SHA-256, with an absolute expiry and an idle timeout, and a CSRF token that unsafe requests must carry. Failed
/// sign-ins lock an email with back-off and limit an address, saying nothing about whether the email exists.
enum People {
    static let cookie = "flowline_session"
    static let sessionLifetime: Int64 = 7 * 86_400
    static let idleTimeout: Int64 = 8 * 3600
    /// Consecutive failures before an email locks, and the longest lock.
    static let freeFailures = 5
    static let longestLock: Int64 = 3600

    /// bcrypt's cost: 12 by default; `FLOWLINE_BCRYPT_COST` changes it (4 to 16), and tests in one process lower it
    /// with `useCost`, so the suite's many sign-ins do not starve the tests that time the server.
    private static let costSetting = Mutex<UInt8>({
        let n = ProcessInfo.processInfo.environment["FLOWLINE_BCRYPT_COST"].flatMap { UInt8($0) } ?? 12
        return min(max(n, 4), 16)
    }())
    private static let decoys = Mutex<[UInt8: String]>([:])

    static var cost: UInt8 { costSetting.withLock { $0 } }
    static func useCost(_ c: UInt8) { costSetting.withLock { $0 = min(max(c, 4), 16) } }

    /// Runs bcrypt on a thread of its own: it is slow on purpose, and must not hold a request thread.
    static func hash(_ password: String) async throws -> String {
        let cost = self.cost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    static func verify(_ password: String, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
    }

    /// A hash to verify against for an email that has no account, at the current cost: the same work, so the time an
    /// answer takes says nothing about which emails exist.
    static func decoy() async throws -> String {
        let cost = self.cost
        if let known = decoys.withLock({ $0[cost] }) { return known }
        let made = try await hash("not a password of anyone")
        decoys.withLock { $0[cost] = made }
        return made
    }

    static let common: Set<String> = [
        "password", "password1", "password12", "password123", "password1234", "1234567890", "12345678910", "qwertyuiop",
        "qwerty1234", "1q2w3e4r5t", "iloveyou12", "admin12345", "administrator", "letmein123", "welcome123", "abc1234567",
        "senha12345", "senha123456", "mudar12345", "brasil2026", "0123456789", "1111111111", "aaaaaaaaaa", "changeme123",
        "passw0rd123", "p@ssw0rd123", "football12", "sunshine12", "princess12", "dragon1234",
    ]

    /// A new password: 10 to 256 characters, not one of the most common.
    static func checkPassword(_ p: String) throws {
        guard (10...256).contains(p.unicodeScalars.count) else { throw Problem(.badRequest, "password must be 10 to 256 characters") }
        guard !common.contains(p.lowercased()) else { throw Problem(.badRequest, "password is one of the most common: choose another") }
    }

    /// An email address, lower-cased: one `@` between a local part and a domain, no whitespace or control characters
    /// (what the schema's pattern says; which addresses exist is for the mail to find out).
    static func email(_ e: String) throws -> String {
        let parts = e.split(separator: "@", omittingEmptySubsequences: false)
        guard (3...254).contains(e.unicodeScalars.count), parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !BodyText.hasControlCharacters(e),
              !e.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0 == "\u{FEFF}" }) else { throw Problem(.badRequest, "email must be an email address") }
        return e.lowercased()
    }

    /// Creates a person who is admin of `tenant`; false when the email is taken.
    static func createAdmin(store: any PeopleRecords, email: String, password: String, name: String?, tenant: String, at: Timestamp) async throws
        -> UserRecord?
    {
        let email = try Self.email(email)
        try checkPassword(password)
        let user = UserRecord(id: "usr_" + APIKeys.random(16), email: email, name: name ?? email, passwordHash: try await hash(password), createdAt: at)
        guard try await store.insertUser(user, memberships: [Membership(tenant: tenant, role: Caller.Role.admin.rawValue)]) else { return nil }
        return user
    }

    /// A new session for `user` in `tenant`: the cookie to set, and the CSRF token unsafe requests must carry.
    static func startSession(store: any PeopleRecords, user: String, tenant: String, secure: Bool, now: Timestamp) async throws
        -> (cookie: Cookie, csrf: String)
    {
        let id = APIKeys.random(43), csrf = csrf(forSession: id)
        try await store.insertSession(SessionRecord(idHash: APIKeys.hash(id), user: user, tenant: tenant, csrfHash: APIKeys.hash(csrf), createdAt: now,
                                                    lastSeenAt: now, expiresAt: now.adding(seconds: sessionLifetime)))
        return (Cookie(name: cookie, value: id, maxAge: Int(sessionLifetime), path: "/", secure: secure, httpOnly: true, sameSite: .lax), csrf)
    }

    /// A session's CSRF token, derived from its id (a synchronizer token that needs no second secret kept): whoever
    /// holds the cookie can learn it from `GET /v1/session`; another site, which cannot read that answer, cannot.
    static func csrf(forSession id: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("flowline csrf".utf8), using: SymmetricKey(data: Data(id.utf8)))
        return SingleSignOn.base64URL(Data(mac))
    }

    /// The caller a request's session cookie stands for, its session read once: nil without a cookie; 401 when the
    /// session is unknown, revoked, expired or idle too long; 403 when a request that changes something (anything but
    /// GET, HEAD, OPTIONS) lacks the session's `X-CSRF-Token`.
    static func caller(of request: Request, store: any PeopleRecords, now: Timestamp) async throws -> Caller? {
        guard let id = request.cookies[cookie]?.value, !id.isEmpty else { return nil }
        let idHash = APIKeys.hash(id)
        guard let s = try await store.session(idHash: idHash), !s.revoked, s.expiresAt > now, s.lastSeenAt.adding(seconds: idleTimeout) > now,
              let role = try await store.memberships(user: s.user).first(where: { $0.tenant == s.tenant }).flatMap({ Caller.Role(rawValue: $0.role) })
        else { throw Problem(.unauthorized, "the session has ended: sign in again") }
        if ![.get, .head, .options].contains(request.method) {
            guard let token = request.headers[HTTPField.Name("X-CSRF-Token")!], APIKeys.equal(APIKeys.hash(token), s.csrfHash) else {
                throw Problem(.forbidden, "a signed-in request that changes something needs the session's X-CSRF-Token")
            }
        }
        // Seen at most once a minute: a session is not a write per request.
        if now.milliseconds - s.lastSeenAt.milliseconds > 60_000 { try await store.touchSession(idHash: idHash, at: now) }
        return Caller(tenant: s.tenant, role: role, keyID: s.user, sessionHash: idHash)
    }
}

/// Attempts per address in a sliding window, in memory (a process's own view; the per-email lock is in the
/// database): failed sign-ins, and sign-ups.
final class AddressLimiter: Sendable {
    private let failures = Mutex<[String: [ContinuousClock.Instant]]>([:])
    static let window: Duration = .seconds(600)
    static let allowed = 20

    /// Whether this address may try again now.
    func allows(_ address: String) -> Bool {
        failures.withLock { f in
            let recent = (f[address] ?? []).filter { $0 > .now - Self.window }
            f[address] = recent
            return recent.count < Self.allowed
        }
    }

    /// Counts one attempt from `address` (a failed sign-in; any sign-up).
    func count(_ address: String) {
        failures.withLock { f in
            if f.count > 100_000 { f.removeAll() }
            f[address, default: []].append(.now)
        }
    }
}

struct PeopleRoutes {
    let store: any PeopleRecords & TenantRecords
    let engine: Engine
    /// The tenant the first admin administers.
    let firstTenant: String
    /// `Secure` cookies: the server is reached over https.
    let secureCookies: Bool
    let addresses = AddressLimiter()

    func addRoutes(to router: Router<FlowlineRequestContext>) {
        router.post("v1/setup", use: setup)
        router.post("v1/session", use: signIn)
        router.get("v1/session", use: current)
        router.put("v1/session", use: switchTenant)
        router.delete("v1/session", use: signOut)
    }

    struct Setup: JSONRequest {
        var token: String
        var email: String
        var password: String
        var name: String?

        func validated() throws -> Setup {
            _ = try BodyText.identifier(token, "token", max: 128)
            if let name { _ = try BodyText.identifier(name, "name", max: 200) }
            return self
        }
    }

    struct Person: JSONResponse {
        struct Tenant: Encodable, Sendable {
            var id: String
            var role: String
        }
        var id: String
        var email: String
        var name: String
        var tenant: String
        var role: String
        var tenants: [Tenant]
        var csrfToken: String?

        enum CodingKeys: String, CodingKey {
            case id, email, name, tenant, role, tenants
            case csrfToken = "csrf_token"
        }
    }

    /// `POST /v1/setup {token, email, password, name?}`: the first admin, with the one-time token `serve` printed.
    @Sendable func setup(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let body = try await request.decode(Setup.self, context: context)
        guard try await store.userCount() == 0 else { throw Problem(.conflict, "the first admin exists already: sign in") }
        let email = try People.email(body.email)
        try People.checkPassword(body.password)
        guard try await store.useLink(hash: APIKeys.hash(body.token), kind: "setup", at: engine.now) != nil else {
            throw Problem(.notFound, "no such setup link: it was used already, or never existed")
        }
        guard let user = try await People.createAdmin(store: store, email: email, password: body.password, name: body.name, tenant: firstTenant,
                                                      at: engine.now) else {
            throw Problem(.conflict, "the first admin exists already: sign in")
        }
        try await store.audit(AuditEntry(tenant: firstTenant, actor: user.id, action: "user.setup", subject: user.id, request: context.id, at: engine.now))
        return try Person(id: user.id, email: user.email, name: user.name, tenant: firstTenant, role: "admin",
                          tenants: [.init(id: firstTenant, role: "admin")]).response(status: .created)
    }

    struct SignIn: JSONRequest {
        var email: String
        var password: String
        var tenant: String?

        func validated() throws -> SignIn {
            guard (1...256).contains(password.count) else { throw Problem(.badRequest, "password must be 1 to 256 characters") }
            if let tenant { _ = try BodyText.identifier(tenant, "tenant", max: 64) }
            return self
        }
    }

    /// `POST /v1/session {email, password, tenant?}`: sets the session cookie and answers who signed in, with the CSRF
    /// token unsafe requests must carry (`X-CSRF-Token`).
    @Sendable func signIn(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let body = try await request.decode(SignIn.self, context: context)
        let email = (try? People.email(body.email)) ?? body.email.lowercased()
        let address = "address:" + (context.remoteAddress ?? "unknown")
        let now = engine.now
        guard addresses.allows(address) else {
            throw Problem(.tooManyRequests, "too many failed sign-ins from this address: try again later", retryAfter: 60)
        }
        let emailKey = "email:" + APIKeys.hash(email)
        let (failures, lockedUntil) = try await store.signInFailures(key: emailKey)
        if let lockedUntil, lockedUntil > now {
            let wait = Int((lockedUntil.milliseconds - now.milliseconds + 999) / 1000)
            throw Problem(.tooManyRequests, "too many failed sign-ins for this email: try again in \(wait) s", retryAfter: wait)
        }
        let user = try await store.user(email: email)
        // The same work whether or not the email has an account.
        // A person who signs in only through a provider has no password: the decoy's work, and a refusal.
        var against = user?.passwordHash ?? ""
        if against.isEmpty { against = try await People.decoy() }
        let ok = try await People.verify(body.password, hash: against) && user?.passwordHash.isEmpty == false
        var memberships: [Membership] = []
        if let user { memberships = try await store.memberships(user: user.id) }
        guard ok, let user, let membership = body.tenant.map({ t in memberships.first { $0.tenant == t } }) ?? memberships.first else {
            addresses.count(address)
            let lock: Timestamp? = failures + 1 >= People.freeFailures
                ? now.adding(seconds: min(People.longestLock, 30 << Int64(min(failures + 1 - People.freeFailures, 7)))) : nil
            try await store.recordSignInFailure(key: emailKey, lockedUntil: lock, at: now)
            if let user, let tenant = memberships.first?.tenant {
                try await store.audit(AuditEntry(tenant: tenant, actor: user.id, action: "session.failed", subject: user.id, request: context.id, at: now))
            }
            context.logger.notice("sign-in refused", metadata: ["failures": "\(failures + 1)"])
            throw Problem(.unauthorized, "the email or password is not right")
        }
        try await store.clearSignInFailures(key: emailKey)
        let (cookie, csrf) = try await People.startSession(store: store, user: user.id, tenant: membership.tenant, secure: secureCookies, now: now)
        try await store.audit(AuditEntry(tenant: membership.tenant, actor: user.id, action: "session.create", subject: user.id, request: context.id, at: now))
        var response = try Person(id: user.id, email: user.email, name: user.name, tenant: membership.tenant, role: membership.role,
                                  tenants: memberships.map { Person.Tenant(id: $0.tenant, role: $0.role) }, csrfToken: csrf).response(status: .created)
        response.setCookie(cookie)
        return response
    }

    /// The session's caller, or 401.
    private func sessionCaller(_ request: Request) async throws -> Caller {
        guard let caller = try await People.caller(of: request, store: store, now: engine.now) else { throw Problem(.unauthorized, "not signed in") }
        return caller
    }

    /// `GET /v1/session`: who is signed in, in which tenant, their other tenants, and the session's CSRF token (a
    /// browser that signed in through a provider learns it here).
    @Sendable func current(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try await sessionCaller(request)
        guard let user = try await store.user(id: caller.keyID) else { throw Problem(.unauthorized, "not signed in") }
        let memberships = try await store.memberships(user: user.id)
        var response = try Person(id: user.id, email: user.email, name: user.name, tenant: caller.tenant, role: caller.role.rawValue,
                                  tenants: memberships.map { Person.Tenant(id: $0.tenant, role: $0.role) },
                                  csrfToken: request.cookies[People.cookie].map { People.csrf(forSession: $0.value) }).response()
        response.headers[.cacheControl] = "no-store"
        return response
    }

    struct Switch: JSONRequest {
        var tenant: String

        func validated() throws -> Switch {
            _ = try BodyText.identifier(tenant, "tenant", max: 64)
            return self
        }
    }

    /// `PUT /v1/session {tenant}`: the signed-in person works in another of their tenants, in their role there.
    @Sendable func switchTenant(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try await sessionCaller(request)  // with its CSRF token: switching is a change
        let body = try await request.decode(Switch.self, context: context)
        guard let user = try await store.user(id: caller.keyID) else { throw Problem(.unauthorized, "not signed in") }
        let memberships = try await store.memberships(user: user.id)
        guard let membership = memberships.first(where: { $0.tenant == body.tenant }) else {
            throw Problem(.forbidden, "you are not a member of tenant \(body.tenant)")
        }
        try await store.switchSession(idHash: caller.sessionHash ?? "", tenant: membership.tenant)
        try await store.audit(AuditEntry(tenant: membership.tenant, actor: user.id, action: "session.switch", subject: "from \(caller.tenant)",
                                         request: context.id, at: engine.now))
        return try Person(id: user.id, email: user.email, name: user.name, tenant: membership.tenant, role: membership.role,
                          tenants: memberships.map { Person.Tenant(id: $0.tenant, role: $0.role) },
                          csrfToken: request.cookies[People.cookie].map { People.csrf(forSession: $0.value) }).response()
    }

    /// `DELETE /v1/session`: signs out, ending the session for good (a copied cookie no longer works either).
    @Sendable func signOut(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try await sessionCaller(request)  // with its CSRF token: signing out is a change
        try await store.revokeSession(idHash: caller.sessionHash ?? "")
        try await store.audit(AuditEntry(tenant: caller.tenant, actor: caller.keyID, action: "session.end", subject: caller.keyID, request: context.id,
                                         at: engine.now))
        var response = Response(status: .noContent)
        response.setCookie(Cookie(name: People.cookie, value: "", maxAge: 0, path: "/", secure: secureCookies, httpOnly: true, sameSite: .lax))
        return response
    }
}
