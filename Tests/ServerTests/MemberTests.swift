import FlowEngine
@testable import FlowStore
import FlowVM
import FlowlineTestKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Testing

/// Admins invite people by single-use, expiring links, change their roles, remove them (never the last admin), end
/// their sessions and reset their passwords.
@Suite struct MemberTests {
    static let password = PeopleTests.password

    @Test(arguments: Backend.available)
    func inviteAcceptSignInAndWorkInTheRoleGiven(_ backend: Backend) async throws {
        let clock = APIChannelConnectorTests.Clock()
        let rig = try await RouterTests.Rig(backend: backend, clock: { clock.now })
        let admin = try await PeopleTests.member(rig, "owner@a.example", role: .admin)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            try await client.execute(uri: "/v1/members/invitations", method: .post, headers: RouterTests.auth(rig.agentA),
                                     body: RouterTests.body(#"{"email": "bia@a.example", "role": "agent"}"#)) { #expect($0.status == .forbidden) }
            let invitation = try await client.execute(uri: "/v1/members/invitations", method: .post, headers: a,
                                                      body: RouterTests.body(#"{"email": "Bia@A.example", "role": "agent"}"#)) { r in
                #expect(r.status == .created)
                return RouterTests.json(r)
            }
            let token = invitation["token"].text
            #expect(invitation["email"] == "bia@a.example" && invitation["link"] == .string("http://127.0.0.1:8080/invitation#\(token)")
                    && invitation["sent"] == false)
            try await client.execute(uri: "/v1/members/invitations", method: .post, headers: a,
                                     body: RouterTests.body(#"{"email": "owner@a.example", "role": "agent"}"#)) { #expect($0.status == .conflict) }
            func accept(_ t: String, _ password: String = Self.password) async throws -> HTTPResponse.Status {
                try await client.execute(uri: "/v1/invitations/accept", method: .post,
                                         body: RouterTests.body(#"{"token": "\#(t)", "password": "\#(password)", "name": "Bia"}"#)) { $0.status }
            }
            #expect(try await accept("forged-token") == .notFound)
            #expect(try await accept(token, "short") == .badRequest, "a weak password spends nothing")
            #expect(try await accept(token) == .created)
            #expect(try await accept(token) == .notFound, "single use")
            let bia = try await PeopleTests.signIn(client, "bia@a.example", Self.password)
            #expect(bia.status == .created && bia.body["role"] == "agent" && bia.body["tenant"] == "a")
            let cookie = try #require(bia.cookie)
            try await client.execute(uri: "/v1/members", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/members", method: .get, headers: a) { r in
                let members = RouterTests.json(r)["members"]
                #expect(members == [["id": members[0]["id"], "email": "bia@a.example", "name": "Bia", "role": "agent"],
                                    ["id": .string(admin.id), "email": "owner@a.example", "name": "owner@a.example", "role": "admin"]])
            }
            // Someone with an account joins another tenant with their own password; a wrong one spends nothing.
            let other = try await client.execute(uri: "/v1/members/invitations", method: .post, headers: RouterTests.auth(rig.adminB),
                                                 body: RouterTests.body(#"{"email": "bia@a.example", "role": "supervisor"}"#)) { RouterTests.json($0)["token"].text }
            #expect(try await accept(other, "not her password at all") == .unauthorized)
            #expect(try await accept(other) == .created)
            let both = try await PeopleTests.signIn(client, "bia@a.example", Self.password, tenant: "b")
            #expect(both.body["role"] == "supervisor" && both.body["tenants"] == [["id": "a", "role": "agent"], ["id": "b", "role": "supervisor"]])
            // An invitation expires.
            let late = try await client.execute(uri: "/v1/members/invitations", method: .post, headers: a,
                                                body: RouterTests.body(#"{"email": "late@a.example", "role": "agent"}"#)) { RouterTests.json($0)["token"].text }
            clock.advance(seconds: MemberRoutes.invitationLifetime + 1)
            #expect(try await accept(late) == .notFound)
        }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func rolesRemovalTheLastAdminSessionsAndResets(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        let owner = try await PeopleTests.member(rig, "owner@a.example", role: .admin)
        let lead = try await PeopleTests.member(rig, "lead@a.example", role: .supervisor)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            func role(_ id: String, _ r: String) async throws -> HTTPResponse.Status {
                try await client.execute(uri: "/v1/members/\(id)", method: .put, headers: a, body: RouterTests.body(#"{"role": "\#(r)"}"#)) { $0.status }
            }
            #expect(try await role(owner.id, "agent") == .conflict, "the last admin stays an admin")
            #expect(try await role(lead.id, "platform") == .badRequest)
            #expect(try await role(lead.id, "admin") == .ok)
            #expect(try await role(owner.id, "agent") == .ok, "with another admin, the first may step down")
            #expect(try await role("usr_nobody", "agent") == .notFound)
            let otherTenants = try await PeopleTests.member(rig, "b-person@b.example", role: .admin, tenant: "b")
            #expect(try await role(otherTenants.id, "agent") == .notFound, "another tenant's people are not ours")
            try await client.execute(uri: "/v1/members/\(lead.id)", method: .delete, headers: a) { #expect($0.status == .conflict, "lead is the last admin now") }

            // Sessions end on demand, and with a removal.
            let s1 = try #require(try await PeopleTests.signIn(client, "owner@a.example", Self.password).cookie)
            try await client.execute(uri: "/v1/members/\(owner.id)/sessions", method: .delete, headers: a) { #expect(RouterTests.json($0)["ended"] == 1) }
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: s1]) { #expect($0.status == .unauthorized) }
            let s2 = try #require(try await PeopleTests.signIn(client, "owner@a.example", Self.password).cookie)
            try await client.execute(uri: "/v1/members/\(owner.id)", method: .delete, headers: a) { #expect($0.status == .noContent) }
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: s2]) { #expect($0.status == .unauthorized) }

            // A reset link sets a new password, once, and ends every session.
            let s3 = try #require(try await PeopleTests.signIn(client, "lead@a.example", Self.password).cookie)
            let reset = try await client.execute(uri: "/v1/members/\(lead.id)/reset", method: .post, headers: a) { RouterTests.json($0) }
            #expect(reset["link"].text.hasPrefix("http://127.0.0.1:8080/password#") && reset["email"] == "lead@a.example")
            let newPassword = "another long passphrase"
            func setPassword() async throws -> HTTPResponse.Status {
                try await client.execute(uri: "/v1/password", method: .post,
                                         body: RouterTests.body(#"{"token": "\#(reset["token"].text)", "password": "\#(newPassword)"}"#)) { $0.status }
            }
            #expect(try await setPassword() == .noContent)
            #expect(try await setPassword() == .notFound)
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: s3]) { #expect($0.status == .unauthorized) }
            #expect(try await PeopleTests.signIn(client, "lead@a.example", Self.password).status == .unauthorized)
            #expect(try await PeopleTests.signIn(client, "lead@a.example", newPassword).status == .created)
        }
        let actions = try await rig.store.auditLog(tenant: "a").map(\.action)
        for action in ["member.role", "member.sessions.end", "member.remove", "member.reset", "password.set"] {
            #expect(actions.contains(action), "\(action) is audited")
        }
        await rig.store.close()
    }

    /// What the outbox and the links table hold, as text.
    static func stored(_ store: SQLStore) async throws -> String {
        try await store.driver.transaction { db in
            let rows = try await db.query("SELECT payload AS t FROM outbox UNION ALL SELECT hash || ' ' || COALESCE(detail, '') AS t FROM links", [])
            return rows.map { $0.text("t") ?? "" }.joined(separator: "\n")
        }
    }

    /// A quoted-printable body as text (soft line breaks joined, `=XX` decoded), for ASCII links.
    static func unquoted(_ qp: String) -> String {
        var s = qp.replacingOccurrences(of: "=\r\n", with: "")
        for byte in 0x21...0x7E {
            s = s.replacingOccurrences(of: String(format: "=%02X", byte), with: String(UnicodeScalar(UInt8(byte))))
        }
        return s
    }

    /// The token after `marker` in a mail.
    static func token(after marker: String, in mail: String) -> String? {
        guard let r = unquoted(mail).range(of: marker) else { return nil }
        return String(unquoted(mail)[r.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
    }

    @Test(arguments: Backend.available)
    func invitationsAndResetsAreEmailedThroughTheTenantsEmailChannelSealedUntilSent(_ backend: Backend) async throws {
        let peer = try SMTPClientTests.Peer()
        let rig = try await RouterTests.Rig(backend: backend, people: PeopleSettings(firstTenant: "a", publicURL: "https://flows.example"))
        let to = SMTPClientTests.unique("bia")
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel: Value = ["kind": "email", "name": "mail", "host": "localhost", "port": .number(Double(peer.plain)), "security": "none",
                                  "from": "Clínica Sol <team@clinic.example>"]
            try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body(channel.jsonText)) { #expect($0.status == .created) }
            let invitation = try await client.execute(uri: "/v1/members/invitations", method: .post, headers: a,
                                                      body: RouterTests.body(#"{"email": "\#(to)", "role": "agent"}"#)) { RouterTests.json($0) }
            #expect(invitation["sent"] == true && invitation["token"] == .null && invitation["link"] == .null, "emailed, not shown")
            // Queued, not sent yet: the link is nowhere in the database, only its hash and a sealed payload.
            let queued = try await Self.stored(rig.store)
            #expect(queued.contains("$sealed"))
            try await rig.engine.drain()
            let (mail, envelope) = try await peer.received(to)
            #expect(envelope["mail_from"] == "team@clinic.example")
            let token = try #require(Self.token(after: "https://flows.example/invitation#", in: mail))
            #expect(token.count >= 32)
            for text in [queued, try await Self.stored(rig.store)] { #expect(!text.contains(token), "the token is not kept in the clear") }
            try await client.execute(uri: "/v1/invitations/accept", method: .post,
                                     body: RouterTests.body(#"{"token": "\#(token)", "password": "\#(Self.password)"}"#)) { #expect($0.status == .created) }
            // A reset goes the same way.
            let id = try #require(try await rig.store.user(email: to)?.id)
            let reset = try await client.execute(uri: "/v1/members/\(id)/reset", method: .post, headers: a) { RouterTests.json($0) }
            #expect(reset["sent"] == true && reset["token"] == .null)
            try await rig.engine.drain()
            let again = try await Peers.eventually("the reset mail", seconds: 5) { () -> String? in
                for file in try FileManager.default.contentsOfDirectory(atPath: peer.spool) where file.hasSuffix(".eml") {
                    let text = try String(contentsOfFile: peer.spool + "/" + file, encoding: .utf8)
                    if text.contains(to), Self.token(after: "https://flows.example/password#", in: text) != nil { return text }
                }
                return nil
            }
            let resetToken = try #require(Self.token(after: "https://flows.example/password#", in: again))
            try await client.execute(uri: "/v1/password", method: .post,
                                     body: RouterTests.body(#"{"token": "\#(resetToken)", "password": "another long passphrase"}"#)) { #expect($0.status == .noContent) }
        }
        let audit = try await rig.store.auditLog(tenant: "a").map(\.subject)
        #expect(audit.contains("\(to) as agent, emailed"))
        await rig.store.close()
    }
}
