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

/// Self-service sign-up (`FLOWLINE_SIGNUP=open`): off by default; the link is mailed through the operator's email
/// channel; following it makes a tenant and its admin, signed in; an email with an account gets the same answer.
@Suite struct SignUpTests {
    static func signUp(_ client: some TestClientProtocol, _ body: String) async throws -> (HTTPResponse.Status, Value) {
        try await client.execute(uri: "/v1/signup", method: .post, body: RouterTests.body(body)) { ($0.status, RouterTests.json($0)) }
    }

    @Test func signUpIsOffUnlessOpened() async throws {
        let rig = try await RouterTests.Rig()
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/v1/signup", method: .get) { #expect(RouterTests.json($0)["open"] == false) }
            let (status, _) = try await Self.signUp(client, #"{"email": "ana@new.example", "password": "\#(PeopleTests.password)"}"#)
            #expect(status == .notFound)
            try await client.execute(uri: "/v1/signup/verify", method: .post, body: RouterTests.body(#"{"token": "whatever"}"#)) {
                #expect($0.status == .notFound)
            }
        }
        await rig.store.close()
    }

    @Test(arguments: Backend.available)
    func aPersonSignsUpVerifiesTheirEmailAndGetsATenantOfTheirOwn(_ backend: Backend) async throws {
        let peer = try SMTPClientTests.Peer()
        let sink = LogTests.Lines()
        var logger = Logger(label: "flowline.test") { _ in LogTests.Capture(sink: sink) }
        logger.logLevel = .debug
        let rig = try await RouterTests.Rig(backend: backend, logger: logger, people: PeopleSettings(firstTenant: "a", publicURL: "https://flows.example", signUp: true))
        let email = SMTPClientTests.unique("founder")
        let body = #"{"email": "\#(email)", "password": "\#(PeopleTests.password)", "name": "Rita", "company": "Clínica Sol"}"#
        try await rig.app.test(.router) { client in
            try await client.execute(uri: "/v1/signup", method: .get) { #expect(RouterTests.json($0)["open"] == true) }
            // No email channel on the operator's tenant yet: nothing can be sent, and the person is told to come back.
            #expect(try await Self.signUp(client, body).0 == .serviceUnavailable)
            let channel: Value = ["kind": "email", "name": "mail", "host": "localhost", "port": .number(Double(peer.plain)), "security": "none",
                                  "from": "Flowline <hello@flows.example>"]
            try await client.execute(uri: "/v1/channels", method: .post, headers: RouterTests.auth(rig.adminA), body: RouterTests.body(channel.jsonText)) {
                #expect($0.status == .created)
            }
            #expect(try await Self.signUp(client, #"{"email": "\#(email)", "password": "password123"}"#).0 == .badRequest, "a common password")
            let (status, answer) = try await Self.signUp(client, body)
            #expect(status == .accepted && answer == ["status": "check your email"])
            try await rig.engine.drain()
            let (mail, _) = try await peer.received(email)
            let token = try #require(MemberTests.token(after: "https://flows.example/signup#", in: mail))

            try await client.execute(uri: "/v1/signup/verify", method: .post, body: RouterTests.body(#"{"token": "forged"}"#)) { #expect($0.status == .notFound) }
            let (person, cookie) = try await client.execute(uri: "/v1/signup/verify", method: .post, body: RouterTests.body(#"{"token": "\#(token)"}"#)) { r in
                #expect(r.status == .created)
                return (RouterTests.json(r), PeopleTests.cookie(r))
            }
            let tenant = person["tenant"].text
            #expect(tenant.hasPrefix("t-") && person["role"] == "admin" && person["name"] == "Rita" && person["email"] == .string(email))
            // Signed in, as the admin of the new tenant, and nothing of tenant a is theirs.
            let session = try #require(cookie)
            try await client.execute(uri: "/v1/members", method: .get, headers: [.cookie: session]) { r in
                #expect(r.status == .ok && RouterTests.json(r)["members"][0]["email"] == .string(email))
            }
            try await client.execute(uri: "/v1/channels", method: .get, headers: [.cookie: session]) { #expect(RouterTests.json($0)["total"] == 0) }
            try await client.execute(uri: "/v1/signup/verify", method: .post, body: RouterTests.body(#"{"token": "\#(token)"}"#)) {
                #expect($0.status == .notFound, "the link works once")
            }
            #expect(try await PeopleTests.signIn(client, email, PeopleTests.password).status == .created, "the password given at sign-up")

            // Signing up again with that email gets the same answer, and a notice instead of a link.
            #expect(try await Self.signUp(client, body) == (.accepted, ["status": "check your email"]))
            try await rig.engine.drain()
            let notice = try await Peers.eventually("the notice", seconds: 5) { () -> String? in
                for file in try FileManager.default.contentsOfDirectory(atPath: peer.spool) where file.hasSuffix(".eml") {
                    let text = try String(contentsOfFile: peer.spool + "/" + file, encoding: .utf8)
                    if text.contains(email), MemberTests.unquoted(text).contains("has an account already") { return text }
                }
                return nil
            }
            #expect(!MemberTests.unquoted(notice).contains("/signup#"))
            let audit = try await rig.store.auditLog(tenant: tenant).map(\.action)
            #expect(audit.contains("tenant.signup") && audit.contains("session.create"))
        }
        #expect(!"\(sink.all)".contains(PeopleTests.password))
        await rig.store.close()
    }
}
