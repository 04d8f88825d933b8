import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird

/// Signing in through an OpenID Connect provider: `GET /v1/sso` lists them, `GET /v1/sso/{provider}` sends the
/// browser there, and the provider sends it back to `GET /v1/sso/{provider}/callback`, which sets the session cookie
/// and sends the browser on to where it started (`return_to`, a path on this server).
struct SSORoutes {
    let store: any PeopleRecords & TenantRecords
    let engine: Engine
    let sso: SingleSignOn
    /// Where the provider sends the browser back to: `<public URL>/v1/sso/{provider}/callback`.
    let publicURL: String
    let secureCookies: Bool

    /// The browser that started a sign-in carries its `state` here, for the callback to match.
    static let stateCookie = "flowline_sso"
    /// How long a started sign-in may take.
    static let lifetime: Int64 = 600

    func addRoutes(to router: Router<FlowlineRequestContext>) {
        router.get("v1/sso", use: list)
        router.get("v1/sso/{provider}", use: start)
        router.get("v1/sso/{provider}/callback", use: callback)
    }

    struct Providers: JSONResponse {
        struct Item: Encodable, Sendable {
            var name: String
            var label: String
            var start: String
        }
        var items: [Item]
    }

    /// `GET /v1/sso`: the providers a sign-in page offers.
    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        try Providers(items: sso.providers.values.sorted { $0.name < $1.name }.map {
            Providers.Item(name: $0.name, label: $0.label, start: "/v1/sso/\($0.name)")
        }).response()
    }

    private func provider(_ context: FlowlineRequestContext) throws -> OIDCProvider {
        guard let name = context.parameters.get("provider"), let p = sso.providers[name] else {
            throw Problem(.notFound, "no such sign-in provider")
        }
        return p
    }

    private func redirectURI(_ p: OIDCProvider) -> String {
        (publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL) + "/v1/sso/\(p.name)/callback"
    }

    /// What a started sign-in keeps, server-side, until its callback.
    struct Pending: Codable {
        var nonce: String
        var verifier: String
        var returnTo: String
        /// The hash of the invitation being accepted this way.
        var invitation: String?
    }

    /// A path on this server to return to: `/…`, never `//host` or a backslash (which browsers read as another host).
    static func returnPath(_ s: String?) throws -> String {
        guard let s else { return "/" }
        guard s.hasPrefix("/"), !s.hasPrefix("//"), !s.contains("\\"), s.unicodeScalars.count <= 512, !BodyText.hasControlCharacters(s) else {
            throw Problem(.badRequest, "return_to must be a path on this server, such as /flows")
        }
        return s
    }

    /// `GET /v1/sso/{provider}?tenant=&return_to=&invitation=`: 303 to the provider's sign-in page.
    @Sendable func start(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let p = try provider(context)
        let query = request.uri.queryParameters
        let tenant = try query["tenant"].map { try BodyText.identifier(String($0), "tenant", max: 64) }
        let returnTo = try Self.returnPath(query["return_to"].map(String.init))
        var invitation: String?
        if let token = query["invitation"].map(String.init) {
            let hash = APIKeys.hash(token)
            guard try await store.link(hash: hash, kind: "invite", at: engine.now) != nil else {
                throw Problem(.notFound, "no such invitation: it was used already, has expired, or never existed")
            }
            invitation = hash
        }
        let started: SingleSignOn.Start
        do {
            started = try await sso.start(p, redirectURI: redirectURI(p))
        } catch let r as SingleSignOn.Refusal {
            context.logger.warning("single sign-on unavailable", metadata: ["provider": "\(p.name)", "reason": "\(r.reason)"])
            throw Problem(.badGateway, "signing in with \(p.label) is not possible now: \(r.reason)")
        }
        let pending = Pending(nonce: started.nonce, verifier: started.verifier, returnTo: returnTo, invitation: invitation)
        try await store.insertLink(LinkRecord(hash: APIKeys.hash(started.state), kind: "sso", tenant: tenant, user: p.name,
                                              expiresAt: engine.now.adding(seconds: Self.lifetime),
                                              detail: String(decoding: try JSONEncoder().encode(pending), as: UTF8.self)), at: engine.now)
        var response = Self.redirect(to: started.url)
        response.setCookie(Cookie(name: Self.stateCookie, value: started.state, maxAge: Int(Self.lifetime), path: "/v1/sso", secure: secureCookies,
                                  httpOnly: true, sameSite: .lax))
        return response
    }

    /// A 303 that leaves nothing behind: not cached, and no `Referer` naming this server's query to the next one.
    static func redirect(to location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store", HTTPField.Name("Referrer-Policy")!: "no-referrer"])
    }

    /// `GET /v1/sso/{provider}/callback?code=&state=`: the provider's answer. Checks that this browser started this
    /// sign-in (once), exchanges the code, verifies the ID token, finds the person by verified email, and signs
    /// them in (accepting an invitation first, when the sign-in was started with one).
    @Sendable func callback(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let p = try provider(context)
        let query = request.uri.queryParameters
        let now = engine.now
        guard let state = query["state"].map(String.init), !state.isEmpty, state.utf8.count <= 128 else {
            throw Problem(.badRequest, "the provider's answer has no state: start signing in again")
        }
        guard let bound = request.cookies[Self.stateCookie]?.value, APIKeys.equal(APIKeys.hash(bound), APIKeys.hash(state)) else {
            throw Problem(.badRequest, "this sign-in was started in another browser, or too long ago: start signing in again")
        }
        guard let link = try await store.useLink(hash: APIKeys.hash(state), kind: "sso", at: now), link.user == p.name,
              let pending = link.detail.flatMap({ try? JSONDecoder().decode(Pending.self, from: Data($0.utf8)) }) else {
            throw Problem(.badRequest, "this sign-in was used already or has expired: start signing in again")
        }
        func refuse(_ reason: String, _ status: Problem.Kind = .unauthorized) async throws -> Never {
            context.logger.notice("single sign-on refused", metadata: ["provider": "\(p.name)", "reason": "\(reason)"])
            if let tenant = link.tenant, try await store.tenantExists(tenant) {
                try await store.audit(AuditEntry(tenant: tenant, actor: "sso:\(p.name)", action: "session.failed", subject: reason, request: context.id,
                                                 at: now))
            }
            throw Problem(status, "signing in with \(p.label) failed: \(reason)")
        }
        if let error = query["error"].map(String.init) {
            try await refuse("the provider did not sign you in (\(SingleSignOn.errorWord(error)))")
        }
        guard let code = query["code"].map(String.init), !code.isEmpty, code.utf8.count <= 2048 else {
            throw Problem(.badRequest, "the provider's answer has no code: start signing in again")
        }
        let identity: SingleSignOn.IDToken
        do {
            identity = try await sso.finish(p, code: code, redirectURI: redirectURI(p), verifier: pending.verifier, nonce: pending.nonce)
        } catch let r as SingleSignOn.Refusal {
            try await refuse(r.reason)
        }
        guard let claimed = identity.email, identity.emailVerified?.value == true, let email = try? People.email(claimed) else {
            try await refuse("the provider has not verified an email for this account", .forbidden)
        }
        if let invitation = pending.invitation {
            try await accept(invitation, email: email, name: identity.name, context: context, refuse: refuse)
        }
        guard let user = try await store.user(email: email) else {
            try await refuse("no one with this email is a member here: ask an admin for an invitation", .forbidden)
        }
        let memberships = try await store.memberships(user: user.id)
        guard let membership = link.tenant.flatMap({ t in memberships.first { $0.tenant == t } }) ?? memberships.first else {
            try await refuse("no one with this email is a member here: ask an admin for an invitation", .forbidden)
        }
        let (cookie, _) = try await People.startSession(store: store, user: user.id, tenant: membership.tenant, secure: secureCookies, now: now)
        try await store.audit(AuditEntry(tenant: membership.tenant, actor: user.id, action: "session.create", subject: "\(user.id) via \(p.name)",
                                         request: context.id, at: now))
        var response = Self.redirect(to: pending.returnTo)
        response.setCookie(cookie)
        response.setCookie(Cookie(name: Self.stateCookie, value: "", maxAge: 0, path: "/v1/sso", secure: secureCookies, httpOnly: true, sameSite: .lax))
        return response
    }

    /// Accepts the invitation this sign-in was started with, for the email the provider verified: a new person
    /// (who has no password, and signs in through the provider), or an existing one joining another tenant.
    private func accept(_ hash: String, email: String, name: String?, context: FlowlineRequestContext,
                        refuse: (String, Problem.Kind) async throws -> Never) async throws {
        let now = engine.now
        guard let invite = try await store.link(hash: hash, kind: "invite", at: now), let tenant = invite.tenant, let role = invite.role else {
            try await refuse("the invitation was used already or has expired", .notFound)
        }
        guard invite.email == email else { try await refuse("the invitation is for another email than the one you signed in with", .forbidden) }
        guard try await store.useLink(hash: hash, kind: "invite", at: now) != nil else {
            try await refuse("the invitation was used already or has expired", .notFound)
        }
        var user = try await store.user(email: email)
        if user == nil {
            let made = UserRecord(id: "usr_" + APIKeys.random(16), email: email, name: name.flatMap { try? BodyText.identifier($0, "name", max: 200) } ?? email,
                                  passwordHash: "", createdAt: now)
            if try await store.insertUser(made, memberships: []) { user = made } else { user = try await store.user(email: email) }
        }
        guard let user else { try await refuse("the invitation could not be accepted", .conflict) }
        _ = try await store.setMembership(user: user.id, tenant: tenant, role: role)
        try await store.audit(AuditEntry(tenant: tenant, actor: user.id, action: "member.join", subject: "\(user.id) as \(role)", request: context.id,
                                         at: now))
    }
}
