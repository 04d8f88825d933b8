import FlowEngine
import FlowVM
import Foundation
import Hummingbird

/// A tenant's people, managed by its admins: invitations and password resets by single-use, expiring links, roles,
/// removal (never of the last admin), and ending a person's sessions.
struct MemberRoutes {
    let store: any PeopleRecords & TenantRecords
    let engine: Engine
    let mail: PeopleMail

    static let invitationLifetime: Int64 = 7 * 86_400
    static let resetLifetime: Int64 = 86_400

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>, public router: Router<FlowlineRequestContext>) {
        group.get("members", use: list)
        group.post("members/invitations", use: invite)
        group.put("members/{id}", use: setRole)
        group.delete("members/{id}", use: remove)
        group.delete("members/{id}/sessions", use: endSessions)
        group.post("members/{id}/reset", use: reset)
        router.post("v1/invitations/accept", use: accept)
        router.post("v1/password", use: setPassword)
    }

    private func admin(_ context: FlowlineRequestContext) throws -> Caller {
        let caller = try context.requireCaller(.admin, "managing people needs an admin")
        return caller
    }

    static func role(_ r: String) throws -> Caller.Role {
        guard let role = Caller.Role(rawValue: r), role != .platform else { throw Problem(.badRequest, "role must be admin, supervisor or agent") }
        return role
    }

    /// One of the tenant's people, or 404.
    private func member(_ context: FlowlineRequestContext, _ caller: Caller) async throws -> Member {
        let id = try context.parameters.require("id")
        guard let m = try await store.members(tenant: caller.tenant).first(where: { $0.user.id == id }) else {
            throw Problem(.notFound, "no member \(id)")
        }
        return m
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let page = try Page(request)
        let members = try await store.members(tenant: caller.tenant)
        return page.response("members", page.slice(members).map {
            ["id": .string($0.user.id), "email": .string($0.user.email), "name": .string($0.user.name), "role": .string($0.role)]
        }, total: members.count)
    }

    struct Invitation: JSONRequest {
        var email: String
        var role: String
        func validated() throws -> Invitation { _ = try MemberRoutes.role(role); return self }
    }

    /// A link a person follows, valid once until `expires_at`: emailed to them through the tenant's `email` channel
    /// (`sent`), or, when the tenant has none, shown to the admin to pass on (`link`, `token`).
    struct LinkAnswer: JSONResponse {
        var email: String
        var role: String?
        var sent: Bool
        var link: String?
        var token: String?
        var expiresAt: String

        enum CodingKeys: String, CodingKey {
            case email, role, sent, link, token
            case expiresAt = "expires_at"
        }

        init(email: String, role: String? = nil, link: String, token: String, expires: Timestamp, sent: Bool) {
            self.email = email
            self.role = role
            self.sent = sent
            self.link = sent ? nil : link
            self.token = sent ? nil : token
            self.expiresAt = expires.iso8601
        }
    }

    /// `POST /v1/members/invitations {email, role}`.
    @Sendable func invite(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let body = try await request.decode(Invitation.self, context: context)
        let email = try People.email(body.email)
        if try await store.members(tenant: caller.tenant).contains(where: { $0.user.email == email }) {
            throw Problem(.conflict, "\(email) is a member already")
        }
        let token = APIKeys.random(32), expires = engine.now.adding(seconds: Self.invitationLifetime)
        try await store.insertLink(LinkRecord(hash: APIKeys.hash(token), kind: "invite", tenant: caller.tenant, email: email, role: body.role,
                                              expiresAt: expires), at: engine.now)
        let link = mail.link("/invitation#\(token)")
        let sent = try await mail.send(tenant: caller.tenant, to: email, key: "invite:" + APIKeys.hash(token),
                                       subject: "You are invited to \(caller.tenant) on Flowline",
                                       text: """
                                           You are invited to join \(caller.tenant) on Flowline as \(body.role).

                                           Set your password, or sign in with your provider, here (the link works once, until \(expires.iso8601)):
                                           \(link)
                                           """)
        try await store.audit(context, caller, "member.invite", "\(email) as \(body.role)\(sent ? ", emailed" : "")", at: engine.now)
        return try LinkAnswer(email: email, role: body.role, link: link, token: token, expires: expires, sent: sent).response(status: .created)
    }

    struct Accept: JSONRequest {
        var token: String
        var password: String
        var name: String?
        func validated() throws -> Accept {
            _ = try BodyText.identifier(token, "token", max: 128)
            guard (1...256).contains(password.count) else { throw Problem(.badRequest, "password must be 1 to 256 characters") }
            if let name { _ = try BodyText.identifier(name, "name", max: 200) }
            return self
        }
    }

    /// `POST /v1/invitations/accept {token, password, name?}`: a new person sets their password; someone who already
    /// has an account joins the tenant by giving theirs. The link is spent only once everything else holds, so a
    /// mistake (a weak password, a wrong one) can be corrected with the same link.
    @Sendable func accept(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let body = try await request.decode(Accept.self, context: context)
        let hash = APIKeys.hash(body.token)
        guard let link = try await store.link(hash: hash, kind: "invite", at: engine.now), let tenant = link.tenant, let email = link.email,
              let role = link.role else {
            throw Problem(.notFound, "no such invitation: it was used already, has expired, or never existed")
        }
        let existing = try await store.user(email: email)
        if let existing {
            guard try await People.verify(body.password, hash: existing.passwordHash) else {
                throw Problem(.unauthorized, "\(email) has an account: give its password to join")
            }
        } else {
            try People.checkPassword(body.password)
        }
        guard try await store.useLink(hash: hash, kind: "invite", at: engine.now) != nil else {
            throw Problem(.notFound, "no such invitation: it was used already, has expired, or never existed")
        }
        let user: UserRecord
        if let existing {
            user = existing
        } else {
            user = UserRecord(id: "usr_" + APIKeys.random(16), email: email, name: body.name ?? email, passwordHash: try await People.hash(body.password),
                              createdAt: engine.now)
            guard try await store.insertUser(user, memberships: []) else { throw Problem(.conflict, "\(email) has an account already") }
        }
        _ = try await store.setMembership(user: user.id, tenant: tenant, role: role)
        try await store.audit(AuditEntry(tenant: tenant, actor: user.id, action: "member.join", subject: "\(user.id) as \(role)", request: context.id,
                                         at: engine.now))
        return try PeopleRoutes.Person(id: user.id, email: user.email, name: user.name, tenant: tenant, role: role,
                                       tenants: try await store.memberships(user: user.id).map { .init(id: $0.tenant, role: $0.role) })
            .response(status: .created)
    }

    struct RoleChange: JSONRequest {
        var role: String
        func validated() throws -> RoleChange { _ = try MemberRoutes.role(role); return self }
    }

    /// `PUT /v1/members/{id} {role}`.
    @Sendable func setRole(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let member = try await member(context, caller)
        let role = try await request.decode(RoleChange.self, context: context).role
        guard try await store.setMembership(user: member.user.id, tenant: caller.tenant, role: role) == .done else {
            throw Problem(.conflict, "the tenant's last admin stays an admin")
        }
        try await store.audit(context, caller, "member.role", "\(member.user.id): \(member.role) -> \(role)", at: engine.now)
        return json(["id": .string(member.user.id), "role": .string(role)])
    }

    /// `DELETE /v1/members/{id}`: the person leaves the tenant, and their sessions in it end.
    @Sendable func remove(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let member = try await member(context, caller)
        switch try await store.removeMembership(user: member.user.id, tenant: caller.tenant) {
        case .lastAdmin: throw Problem(.conflict, "the tenant's last admin cannot be removed")
        case .notAMember: throw Problem(.notFound, "no member \(member.user.id)")
        case .done: break
        }
        try await store.audit(context, caller, "member.remove", member.user.id, at: engine.now)
        return Response(status: .noContent)
    }

    /// `DELETE /v1/members/{id}/sessions`: signs the person out everywhere.
    @Sendable func endSessions(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let member = try await member(context, caller)
        let n = try await store.revokeSessions(user: member.user.id)
        try await store.audit(context, caller, "member.sessions.end", member.user.id, at: engine.now)
        return json(["id": .string(member.user.id), "ended": .number(Double(n))])
    }

    /// `POST /v1/members/{id}/reset`: a link with which the person sets a new password (`POST /v1/password`).
    @Sendable func reset(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try admin(context)
        let member = try await member(context, caller)
        let token = APIKeys.random(32), expires = engine.now.adding(seconds: Self.resetLifetime)
        try await store.insertLink(LinkRecord(hash: APIKeys.hash(token), kind: "reset", tenant: caller.tenant, user: member.user.id, expiresAt: expires),
                                   at: engine.now)
        let link = mail.link("/password#\(token)")
        let sent = try await mail.send(tenant: caller.tenant, to: member.user.email, key: "reset:" + APIKeys.hash(token),
                                       subject: "Set a new Flowline password",
                                       text: """
                                           An admin of \(caller.tenant) on Flowline asked for a new password for you.

                                           Set it here (the link works once, until \(expires.iso8601)):
                                           \(link)
                                           """)
        try await store.audit(context, caller, "member.reset", "\(member.user.id)\(sent ? ", emailed" : "")", at: engine.now)
        return try LinkAnswer(email: member.user.email, link: link, token: token, expires: expires, sent: sent).response(status: .created)
    }

    struct NewPassword: JSONRequest {
        var token: String
        var password: String
        func validated() throws -> NewPassword {
            _ = try BodyText.identifier(token, "token", max: 128)
            try People.checkPassword(password)
            return self
        }
    }

    /// `POST /v1/password {token, password}`: a reset link's new password; every session of the person ends.
    @Sendable func setPassword(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let body = try await request.decode(NewPassword.self, context: context)
        guard let link = try await store.useLink(hash: APIKeys.hash(body.token), kind: "reset", at: engine.now), let user = link.user else {
            throw Problem(.notFound, "no such link: it was used already, has expired, or never existed")
        }
        try await store.setPassword(user: user, hash: try await People.hash(body.password))
        _ = try await store.revokeSessions(user: user)
        if let tenant = link.tenant {
            try await store.audit(AuditEntry(tenant: tenant, actor: user, action: "password.set", subject: user, request: context.id, at: engine.now))
        }
        return Response(status: .noContent)
    }
}
