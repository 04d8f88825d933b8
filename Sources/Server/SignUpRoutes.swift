import FlowEngine
import FlowVM
import Foundation
import Hummingbird

/// Self-service sign-up, for platforms that sell Flowline to businesses (`FLOWLINE_SIGNUP=open`; off by default):
/// a person gives an email and a password, follows the link mailed to them, and gets a new tenant of their own as
/// its admin, signed in.
///
/// The answer to a sign-up is the same whether or not the email has an account (one who has is mailed a notice
/// instead of a link), so sign-up tells no one which emails exist. The mail goes through the first tenant's
/// `email` channel (the operator's own), sealed in the outbox like an invitation.
struct SignUpRoutes {
    let store: any PeopleRecords & TenantRecords
    let engine: Engine
    let mail: PeopleMail
    /// The operator's tenant, whose `email` channel sends sign-up mail.
    let operatorTenant: String
    let open: Bool
    let secureCookies: Bool
    /// Sign-ups per address, counted whatever their outcome.
    let addresses = AddressLimiter()

    static let lifetime: Int64 = 86_400

    func addRoutes(to router: Router<FlowlineRequestContext>) {
        router.get("v1/signup", use: state)
        router.post("v1/signup", use: signUp)
        router.post("v1/signup/verify", use: verify)
    }

    struct State: JSONResponse {
        var open: Bool
    }

    /// `GET /v1/signup`: whether a sign-in page offers sign-up.
    @Sendable func state(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        try State(open: open).response()
    }

    struct SignUp: JSONRequest {
        var email: String
        var password: String
        var name: String?
        /// The business: the new tenant's name.
        var company: String?

        func validated() throws -> SignUp {
            if let name { _ = try BodyText.identifier(name, "name", max: 200) }
            if let company { _ = try BodyText.identifier(company, "company", max: 200) }
            return self
        }
    }

    /// What a sign-up keeps until its link is followed.
    struct Pending: Codable {
        var passwordHash: String
        var name: String?
        var company: String?
    }

    private func requireOpen() throws {
        // Not found, as any route this server does not offer: a sign-in page asks `GET /v1/signup` first.
        guard open else { throw Problem(.notFound, "sign-up is not open on this server: ask its operator for an invitation") }
    }

    /// `POST /v1/signup {email, password, name?, company?}`: 202, and a link in the mail.
    @Sendable func signUp(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        try requireOpen()
        let body = try await request.decode(SignUp.self, context: context)
        let email = try People.email(body.email)
        try People.checkPassword(body.password)
        let address = "address:" + (context.remoteAddress ?? "unknown")
        guard addresses.allows(address) else { throw Problem(.tooManyRequests, "too many sign-ups from this address: try again later", retryAfter: 600) }
        addresses.count(address)
        let now = engine.now
        let sent: Bool
        if try await store.user(email: email) != nil {
            sent = try await mail.send(tenant: operatorTenant, to: email, key: "signup:" + APIKeys.random(32), subject: "You already have a Flowline account",
                                       text: """
                                           Someone (you, we hope) tried to sign up to Flowline with this address, which has an account already.
                                           Sign in instead: \(mail.link("/")). If you forgot your password, ask an admin of your workspace to reset it.
                                           """)
        } else {
            let token = APIKeys.random(32), expires = now.adding(seconds: Self.lifetime)
            let pending = Pending(passwordHash: try await People.hash(body.password), name: body.name, company: body.company)
            try await store.insertLink(LinkRecord(hash: APIKeys.hash(token), kind: "signup", email: email, expiresAt: expires,
                                                  detail: String(decoding: try JSONEncoder().encode(pending), as: UTF8.self)), at: now)
            sent = try await mail.send(tenant: operatorTenant, to: email, key: "signup:" + APIKeys.hash(token), subject: "Confirm your Flowline sign-up",
                                       text: """
                                           Welcome to Flowline. Confirm your email to create your workspace (the link works once, until \(expires.iso8601)):
                                           \(mail.link("/signup#\(token)"))
                                           """)
        }
        guard sent else {
            context.logger.error("sign-up is open but the operator's tenant has no email channel to send its links")
            throw Problem(.unavailable, "sign-up cannot send its email now: try again later", retryAfter: 300)
        }
        return json(["status": "check your email"], status: .accepted)
    }

    struct Verify: JSONRequest {
        var token: String

        func validated() throws -> Verify {
            _ = try BodyText.identifier(token, "token", max: 128)
            return self
        }
    }

    /// `POST /v1/signup/verify {token}`: the mailed link, followed. Makes the tenant and its admin, and signs them in.
    @Sendable func verify(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        try requireOpen()
        let body = try await request.decode(Verify.self, context: context)
        let now = engine.now
        guard let link = try await store.useLink(hash: APIKeys.hash(body.token), kind: "signup", at: now), let email = link.email,
              let pending = link.detail.flatMap({ try? JSONDecoder().decode(Pending.self, from: Data($0.utf8)) }) else {
            throw Problem(.notFound, "no such sign-up link: it was used already, has expired, or never existed")
        }
        let tenant = "t-" + APIKeys.random(12).lowercased()
        let user = UserRecord(id: "usr_" + APIKeys.random(16), email: email, name: pending.name ?? email, passwordHash: pending.passwordHash,
                              createdAt: now)
        // Someone signed up twice and followed both links, or was invited meanwhile: one account per email.
        guard try await store.user(email: email) == nil else { throw Problem(.conflict, "\(email) has an account already: sign in") }
        try await store.ensureTenant(id: tenant, name: pending.company ?? "\(pending.name ?? email)'s workspace")
        guard try await store.insertUser(user, memberships: [Membership(tenant: tenant, role: Caller.Role.admin.rawValue)]) else {
            throw Problem(.conflict, "\(email) has an account already: sign in")
        }
        try await store.audit(AuditEntry(tenant: tenant, actor: user.id, action: "tenant.signup", subject: tenant, request: context.id, at: now))
        let (cookie, csrf) = try await People.startSession(store: store, user: user.id, tenant: tenant, secure: secureCookies, now: now)
        try await store.audit(AuditEntry(tenant: tenant, actor: user.id, action: "session.create", subject: user.id, request: context.id, at: now))
        var response = try PeopleRoutes.Person(id: user.id, email: email, name: user.name, tenant: tenant, role: "admin",
                                               tenants: [.init(id: tenant, role: "admin")], csrfToken: csrf).response(status: .created)
        response.setCookie(cookie)
        return response
    }
}
