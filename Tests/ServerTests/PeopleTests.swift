import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
@testable import Server
import Testing

/// People sign in as themselves: the first admin's setup, sessions with a CSRF token, lockout, roles, sign-out; and
/// no password, session id or token ever reaches a log line or an error body.
@Suite struct PeopleTests {
    static let password = "correct horse battery staple"

    /// The session cookie's `name=value`, from a sign-in's `Set-Cookie`.
    static func cookie(_ r: TestResponse) -> String? {
        r.headers[values: .setCookie].first { $0.hasPrefix(People.cookie + "=") }.map { String($0.split(separator: ";")[0]) }
    }

    static func signIn(_ client: some TestClientProtocol, _ email: String, _ password: String, tenant: String? = nil) async throws
        -> (status: HTTPResponse.Status, cookie: String?, body: Value, setCookie: String?)
    {
        let t = tenant.map { #", "tenant": "\#($0)""# } ?? ""
        return try await client.execute(uri: "/v1/session", method: .post, headers: [.contentType: "application/json"],
                                        body: RouterTests.body(#"{"email": "\#(email)", "password": "\#(password)"\#(t)}"#)) { r in
            (r.status, Self.cookie(r), RouterTests.json(r), r.headers[values: .setCookie].first)
        }
    }

    @Test(arguments: Backend.available)
    func theFirstAdminSetsUpWithTheOneTimeLinkThenSignsIn(_ backend: Backend) async throws {
        let sink = LogTests.Lines()
        var logger = Logger(label: "flowline.test") { _ in LogTests.Capture(sink: sink) }
        logger.logLevel = .debug
        let rig = try await RouterTests.Rig(backend: backend, logger: logger)
        try await rig.store.insertLink(LinkRecord(hash: APIKeys.hash("setup-token-1234"), kind: "setup"), at: rig.engine.now)
        try await rig.app.test(.router) { client in
            func setup(_ body: String) async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: "/v1/setup", method: .post, body: RouterTests.body(body)) { ($0.status, RouterTests.json($0)) }
            }
            #expect(try await setup(#"{"token": "guessed", "email": "ana@clinic.example", "password": "\#(Self.password)"}"#).0 == .notFound)
            #expect(try await setup(#"{"token": "setup-token-1234", "email": "ana@clinic.example", "password": "short"}"#).0 == .badRequest)
            #expect(try await setup(#"{"token": "setup-token-1234", "email": "ana@clinic.example", "password": "password123"}"#).1["detail"].text
                .contains("common"))
            #expect(try await setup(#"{"token": "setup-token-1234", "email": "not an email", "password": "\#(Self.password)"}"#).0 == .badRequest)
            let (status, admin) = try await setup(#"{"token": "setup-token-1234", "email": "Ana@Clinic.example", "password": "\#(Self.password)", "name": "Ana"}"#)
            #expect(status == .created && admin["email"] == "ana@clinic.example" && admin["role"] == "admin" && admin["tenant"] == "demo")
            #expect(try await setup(#"{"token": "setup-token-1234", "email": "bob@clinic.example", "password": "\#(Self.password)"}"#).0 == .conflict,
                    "once there is an admin, setup is over")

            let signedIn = try await Self.signIn(client, "ana@clinic.example", Self.password)
            #expect(signedIn.status == .created && signedIn.body["csrf_token"].text.count >= 32)
            let flags = try #require(signedIn.setCookie)
            #expect(flags.contains("HttpOnly") && flags.contains("SameSite=Lax") && flags.contains("Path=/") && !flags.contains("Secure"))
            #expect(!"\(sink.all)".contains(Self.password) && !"\(sink.all)".contains(signedIn.cookie ?? "?") && !"\(sink.all)".contains("setup-token-1234"))
        }
        let audit = try await rig.store.auditLog(tenant: "demo").map(\.action)
        #expect(audit.contains("user.setup") && audit.contains("session.create"))
        await rig.store.close()
    }

    @Test func emailsAndPasswordsAreCheckedAsTheSchemaSays() throws {
        #expect(try People.email("Ana@Clinic.Example") == "ana@clinic.example")
        for bad in ["", "a@", "@b", "a@b@c", " a@b.c", "a@b.c ", "a b@c.d", "a\u{A0}@b.c", "a\u{FEFF}@b.c", "a\u{1}@b.c", "ab"] {
            #expect(throws: Problem.self, "\(bad.debugDescription)") { try People.email(bad) }
        }
        // Ten code points, as JSON Schema counts a minLength, even when they make fewer characters.
        let combining = String(repeating: "e\u{301}", count: 5)
        #expect(combining.count == 5 && combining.unicodeScalars.count == 10)
        #expect(throws: Never.self) { try People.checkPassword(combining) }
        #expect(throws: Problem.self) { try People.checkPassword("short") }
        #expect(throws: Problem.self) { try People.checkPassword("Password123") }
    }

    /// A person with a role in tenant a, made directly in the store.
    static func member(_ rig: RouterTests.Rig, _ email: String, role: Caller.Role, tenant: String = "a") async throws -> UserRecord {
        let user = UserRecord(id: "usr_" + APIKeys.random(8), email: email, name: email, passwordHash: try await People.hash(Self.password),
                              createdAt: rig.engine.now)
        #expect(try await rig.store.insertUser(user, memberships: [Membership(tenant: tenant, role: role.rawValue)]))
        return user
    }

    @Test(arguments: Backend.available)
    func aSessionActsInItsRoleNeedsItsCSRFTokenAndEndsForGood(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        _ = try await Self.member(rig, "agent@a.example", role: .agent)
        let supervisor = try await Self.member(rig, "lead@a.example", role: .supervisor)
        try await rig.app.test(.router) { client in
            let s = try await Self.signIn(client, "lead@a.example", Self.password)
            let cookie = try #require(s.cookie), csrf = s.body["csrf_token"].text
            #expect(s.body["tenant"] == "a" && s.body["role"] == "supervisor" && s.body["tenants"] == [["id": "a", "role": "supervisor"]])
            let flow = RouterTests.body(RouterTests.flow)
            try await client.execute(uri: "/v1/session", method: .get, headers: [.cookie: cookie]) { r in
                #expect(r.status == .ok && RouterTests.json(r)["id"] == .string(supervisor.id) && RouterTests.json(r)["csrf_token"] == .string(csrf))
            }
            // Reads need only the cookie; a change needs the token too (a cross-site form cannot read it).
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: [.cookie: cookie], body: flow) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: [.cookie: cookie, HTTPField.Name("X-CSRF-Token")!: "forged"],
                                     body: flow) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: [.cookie: cookie, HTTPField.Name("X-CSRF-Token")!: csrf],
                                     body: flow) { #expect($0.status == .created) }
            // The role is the person's in that tenant: a supervisor publishes but cannot make keys.
            try await client.execute(uri: "/v1/keys", method: .post, headers: [.cookie: cookie, HTTPField.Name("X-CSRF-Token")!: csrf],
                                     body: RouterTests.body(#"{"role": "agent"}"#)) { #expect($0.status == .forbidden) }
            let agent = try await Self.signIn(client, "agent@a.example", Self.password)
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post,
                                     headers: [.cookie: try #require(agent.cookie), HTTPField.Name("X-CSRF-Token")!: agent.body["csrf_token"].text]) {
                #expect($0.status == .forbidden, "an agent does not publish")
            }
            // Not a member of tenant b: no session there.
            #expect(try await Self.signIn(client, "lead@a.example", Self.password, tenant: "b").status == .unauthorized)

            // Signing out needs the token, and ends the session for every copy of the cookie.
            try await client.execute(uri: "/v1/session", method: .delete, headers: [.cookie: cookie]) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/session", method: .delete, headers: [.cookie: cookie, HTTPField.Name("X-CSRF-Token")!: csrf]) { r in
                #expect(r.status == .noContent && r.headers[values: .setCookie].first?.contains("Max-Age=0") == true)
            }
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/v1/session", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .unauthorized) }
            // An admin-revoked or expired session is over too.
            let again = try await Self.signIn(client, "lead@a.example", Self.password)
            #expect(try await rig.store.revokeSessions(user: supervisor.id) == 1)
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: try #require(again.cookie)]) { #expect($0.status == .unauthorized) }
        }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func aPersonSwitchesBetweenTheirTenantsInTheirRoleInEach(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        let person = try await Self.member(rig, "lead@a.example", role: .supervisor)
        _ = try await rig.store.setMembership(user: person.id, tenant: "b", role: Caller.Role.agent.rawValue)
        try await rig.app.test(.router) { client in
            let s = try await Self.signIn(client, "lead@a.example", Self.password, tenant: "a")
            let cookie = try #require(s.cookie), csrf = s.body["csrf_token"].text
            #expect(s.body["tenants"] == [["id": "a", "role": "supervisor"], ["id": "b", "role": "agent"]])
            func switchTo(_ tenant: String, csrf: String?) async throws -> (HTTPResponse.Status, Value) {
                var headers: HTTPFields = [.cookie: cookie]
                if let csrf { headers[HTTPField.Name("X-CSRF-Token")!] = csrf }
                return try await client.execute(uri: "/v1/session", method: .put, headers: headers, body: RouterTests.body(#"{"tenant": "\#(tenant)"}"#)) {
                    ($0.status, RouterTests.json($0))
                }
            }
            #expect(try await switchTo("b", csrf: nil).0 == .forbidden, "switching is a change: it needs the CSRF token")
            #expect(try await switchTo("c", csrf: csrf).0 == .forbidden, "not a member there")
            let (status, now) = try await switchTo("b", csrf: csrf)
            #expect(status == .ok && now["tenant"] == "b" && now["role"] == "agent" && now["csrf_token"] == .string(csrf))
            // The same cookie now works in b, as an agent: it reads, and cannot publish.
            try await client.execute(uri: "/v1/session", method: .get, headers: [.cookie: cookie]) { #expect(RouterTests.json($0)["tenant"] == "b") }
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: [.cookie: cookie, HTTPField.Name("X-CSRF-Token")!: csrf],
                                     body: RouterTests.body(RouterTests.flow)) { #expect($0.status == .forbidden) }
            #expect(try await switchTo("a", csrf: csrf).1["role"] == "supervisor")
        }
        #expect(try await rig.store.auditLog(tenant: "b").contains { $0.action == "session.switch" })
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func anIdleOrExpiredSessionEnds(_ backend: Backend) async throws {
        let clock = APIChannelConnectorTests.Clock()
        let rig = try await RouterTests.Rig(backend: backend, clock: { clock.now })
        _ = try await Self.member(rig, "lead@a.example", role: .supervisor)
        try await rig.app.test(.router) { client in
            let cookie = try #require(try await Self.signIn(client, "lead@a.example", Self.password).cookie)
            clock.advance(seconds: People.idleTimeout - 60)
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .ok, "active within the idle timeout") }
            clock.advance(seconds: People.idleTimeout + 1)
            try await client.execute(uri: "/v1/flows", method: .get, headers: [.cookie: cookie]) { #expect($0.status == .unauthorized, "idle too long") }
        }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func repeatedFailuresLockAnEmailWhetherOrNotItHasAnAccount(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        _ = try await Self.member(rig, "lead@a.example", role: .supervisor)
        try await rig.app.test(.router) { client in
            let unknown = try await Self.signIn(client, "nobody@a.example", Self.password)
            let wrong = try await Self.signIn(client, "lead@a.example", "wrong password here")
            #expect(unknown.status == .unauthorized && wrong.status == .unauthorized)
            #expect(unknown.body["detail"] == wrong.body["detail"], "the answer does not say whether the email exists")
            for _ in 0..<(People.freeFailures - 1) { _ = try await Self.signIn(client, "lead@a.example", "wrong password here") }
            let locked = try await Self.signIn(client, "lead@a.example", Self.password)
            #expect(locked.status == .tooManyRequests && locked.cookie == nil, "locked, even with the right password")
            for _ in 0..<(People.freeFailures - 1) { _ = try await Self.signIn(client, "nobody@a.example", "x") }
            #expect(try await Self.signIn(client, "nobody@a.example", "x").status == .tooManyRequests, "an unknown email locks the same way")
            #expect(try await Self.signIn(client, "other@a.example", "x").status == .unauthorized, "another email is not locked")
        }
        await rig.store.close()
    }

    /// Against a real `flowline serve`: the first admin from the environment, or from the link it prints.
    @Test(arguments: Backend.available)
    func theFirstAdminBothWaysOnARealServer(_ backend: Backend) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-people-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/flows", withIntermediateDirectories: true)
        func database(_ name: String) async throws -> String {
            switch backend {
            case .sqlite: "sqlite:\(dir)/\(name).db"
            case .postgres: try await TestPostgres.freshDatabase(try Backend.postgresURL())
            }
        }
        let fromEnvironment = try await ServeProcess(database: try await database("env"), log: dir + "/env.log", secretKey: SecretBox.generateKey(),
                                                     flows: dir + "/flows", environment: [
                                                         "FLOWLINE_ADMIN_EMAIL": "ops@clinic.example", "FLOWLINE_ADMIN_PASSWORD": Self.password,
                                                         "FLOWLINE_BCRYPT_COST": "4",
                                                     ])
        let signedIn = try await fromEnvironment.api.call(.POST, "/v1/session", #"{"email": "ops@clinic.example", "password": "\#(Self.password)"}"#, auth: false)
        #expect(signedIn.status == 201 && signedIn.body["role"] == "admin", "\(signedIn)")
        #expect(!fromEnvironment.output.contains(Self.password) && !fromEnvironment.output.contains("/setup#"))
        _ = fromEnvironment.stop()

        let withLink = try await ServeProcess(database: try await database("link"), log: dir + "/link.log", secretKey: SecretBox.generateKey(),
                                              flows: dir + "/flows", environment: ["FLOWLINE_BCRYPT_COST": "4"])
        let line = try #require(withLink.output.split(separator: "\n").first { $0.contains("/setup#") })
        let token = String(line.split(separator: "#").last ?? "")
        #expect(token.count == 32)
        let before = try await withLink.api.call(.POST, "/v1/session", #"{"email": "ana@clinic.example", "password": "\#(Self.password)"}"#, auth: false)
        #expect(before.status == 401)
        let setup = try await withLink.api.call(.POST, "/v1/setup", #"{"token": "\#(token)", "email": "ana@clinic.example", "password": "\#(Self.password)"}"#,
                                                auth: false)
        #expect(setup.status == 201, "\(setup)")
        let spent = try await withLink.api.call(.POST, "/v1/setup", #"{"token": "\#(token)", "email": "eve@clinic.example", "password": "\#(Self.password)"}"#,
                                                auth: false)
        #expect(spent.status == 409, "the link is spent and setup is over")
        let after = try await withLink.api.call(.POST, "/v1/session", #"{"email": "ana@clinic.example", "password": "\#(Self.password)"}"#, auth: false)
        #expect(after.status == 201 && after.body["tenant"] == "demo")
        #expect(!withLink.output.contains(Self.password))
        _ = withLink.stop()
    }
}
