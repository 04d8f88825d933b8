import FlowEngine
import FlowRuntime
import FlowStore
import FlowVM
import FlowlineTestKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
@testable import Server
import Synchronization
import Testing

/// Signing in through an OpenID Connect provider (our own, on loopback, signing with a real key): the code flow with
/// PKCE, state and nonce; every forged or misdirected answer refused; invitations accepted this way; and nothing
/// secret in a log line or an error.
@Suite struct SingleSignOnTests {
    static let callback = "https://flows.example/v1/sso/acme/callback"

    /// What one sign-in left: the callback's answer, and the secrets that must appear in no log line.
    struct Attempt {
        var status: HTTPResponse.Status
        var location: String?
        var session: String?
        var detail: String
        var callbackURI: String
        var stateCookie: String
        var secrets: [String]
    }

    /// A browser's sign-in: start at Flowline, follow to the provider's authorize endpoint, follow its answer back
    /// to the callback with the state cookie (or `cookie` instead, as another browser would have).
    static func attempt(_ client: some TestClientProtocol, _ provider: some TestClientProtocol, query: String = "",
                        cookie: String? = nil) async throws -> Attempt {
        let (location, stateCookie) = try await client.execute(uri: "/v1/sso/acme" + query, method: .get) { r in
            #expect(r.status == .seeOther && r.headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
            let set = r.headers[values: .setCookie].first { $0.hasPrefix(SSORoutes.stateCookie + "=") } ?? ""
            #expect(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/v1/sso"))
            return (r.headers[.location] ?? "", String(set.split(separator: ";").first ?? ""))
        }
        let authorize = try #require(URLComponents(string: location))
        let items = Dictionary(uniqueKeysWithValues: (authorize.queryItems ?? []).map { ($0.name, $0.value ?? "") })
        #expect(items["code_challenge_method"] == "S256" && items["redirect_uri"] == callback && items["nonce"]?.count ?? 0 >= 32)
        let back = try await provider.execute(uri: authorize.path + "?" + (authorize.percentEncodedQuery ?? ""), method: .get) { r in
            #expect(r.status == .found)
            return r.headers[.location] ?? ""
        }
        let returned = try #require(URLComponents(string: back))
        let uri = returned.path + "?" + (returned.percentEncodedQuery ?? "")
        let code = returned.queryItems?.first { $0.name == "code" }?.value ?? "no code"
        return try await client.execute(uri: uri, method: .get, headers: [.cookie: cookie ?? stateCookie]) { r in
            Attempt(status: r.status, location: r.headers[.location], session: PeopleTests.cookie(r), detail: RouterTests.json(r)["detail"].text,
                    callbackURI: uri, stateCookie: cookie ?? stateCookie,
                    secrets: [items["state"] ?? "?", items["nonce"] ?? "?", code, String(stateCookie.dropFirst(SSORoutes.stateCookie.count + 1))])
        }
    }

    @Test(arguments: Backend.available)
    func aPersonSignsInThroughTheProviderAndEveryForgedAnswerIsRefused(_ backend: Backend) async throws {
        let fake = try await FakeOIDC(clientID: "flowline-app", clientSecret: "client-secret-0123456789", redirectURIs: [Self.callback])
        let sink = LogTests.Lines()
        let logger = {
            var l = Logger(label: "flowline.test") { _ in LogTests.Capture(sink: sink) }
            l.logLevel = .debug
            return l
        }()
        let secrets = Mutex<[String]>([fake.clientSecret])
        let forgeries: [(FakeOIDC.Forgery, String)] = [
            (.wrongKey, "signature"), (.unsigned, "algorithm"), (.wrongAudience, "another application"), (.wrongIssuer, "another issuer"),
            (.expired, "expired"), (.wrongNonce, "nonce"),
        ]
        try await fake.app.test(.live) { provider in
            fake.listening(port: try #require(provider.port))
            let acme = OIDCProvider(name: "acme", label: "Acme", issuer: fake.issuer.withLock { $0 }, clientID: fake.clientID,
                                    clientSecret: fake.clientSecret)
            let rig = try await RouterTests.Rig(backend: backend, logger: logger,
                                                people: PeopleSettings(firstTenant: "a", publicURL: "https://flows.example", singleSignOn: [acme]))
            let ana = try await PeopleTests.member(rig, "ana@a.example", role: .supervisor)
            try await rig.app.test(.router) { client in
                try await client.execute(uri: "/v1/sso", method: .get) { r in
                    #expect(RouterTests.json(r)["items"] == [["name": "acme", "label": "Acme", "start": "/v1/sso/acme"]])
                }
                // Signed in: back where the sign-in started, with a session whose CSRF token GET /v1/session tells.
                fake.signedIn.withLock { $0 = FakeOIDC.Person(email: "Ana@A.example", name: "Ana") }
                let ok = try await Self.attempt(client, provider, query: "?return_to=/flows&tenant=a")
                secrets.withLock { $0 += ok.secrets }
                #expect(ok.status == .seeOther && ok.location == "/flows", "\(ok.detail)")
                let session = try #require(ok.session)
                let csrf = try await client.execute(uri: "/v1/session", method: .get, headers: [.cookie: session]) { r in
                    #expect(RouterTests.json(r)["id"] == .string(ana.id) && RouterTests.json(r)["role"] == "supervisor")
                    return RouterTests.json(r)["csrf_token"].text
                }
                secrets.withLock { $0 += [session, csrf] }
                try await client.execute(uri: "/v1/flows/hello", method: .put, headers: [.cookie: session, HTTPField.Name("X-CSRF-Token")!: csrf],
                                         body: RouterTests.body(RouterTests.flow)) { #expect($0.status == .created) }
                // The same answer again (a replayed state and code) starts nothing.
                try await client.execute(uri: ok.callbackURI, method: .get, headers: [.cookie: ok.stateCookie]) { r in
                    #expect(r.status == .badRequest && PeopleTests.cookie(r) == nil && RouterTests.json(r)["detail"].text.contains("used already"))
                }
                #expect(fake.exchanges.withLock { $0 } == 1, "a replayed state never reaches the provider")

                // An answer delivered to another browser (a link an attacker hands out) is refused before the code is used.
                let elsewhere = try await Self.attempt(client, provider, cookie: SSORoutes.stateCookie + "=another-browsers-state")
                #expect(elsewhere.status == .badRequest && elsewhere.session == nil && elsewhere.detail.contains("another browser"))
                secrets.withLock { $0 += elsewhere.secrets }

                // Each forged ID token: refused, no session, a reason that names what is wrong.
                for (forgery, reason) in forgeries {
                    fake.forgery.withLock { $0 = forgery }
                    let a = try await Self.attempt(client, provider, query: "?tenant=a")
                    secrets.withLock { $0 += a.secrets }
                    #expect(a.status == .unauthorized && a.session == nil && a.detail.contains(reason), "\(forgery): \(a.detail)")
                }
                fake.forgery.withLock { $0 = .none }

                // An email the provider has not verified, someone who is no member, a person who declines.
                fake.signedIn.withLock { $0 = FakeOIDC.Person(email: "ana@a.example", verified: false) }
                let unverified = try await Self.attempt(client, provider)
                #expect(unverified.status == .forbidden && unverified.detail.contains("verified"))
                fake.signedIn.withLock { $0 = FakeOIDC.Person(email: "stranger@else.example") }
                let stranger = try await Self.attempt(client, provider)
                #expect(stranger.status == .forbidden && stranger.detail.contains("invitation"))
                fake.signedIn.withLock { $0 = nil }
                let declined = try await Self.attempt(client, provider)
                #expect(declined.status == .unauthorized && declined.detail.contains("access_denied"))
                secrets.withLock { $0 += unverified.secrets + stranger.secrets + declined.secrets }

                // Only a path on this server to return to, and only providers that are configured.
                for bad in ["//evil.example/x", "https://evil.example", "/\\evil.example"] {
                    let q = bad.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                    try await client.execute(uri: "/v1/sso/acme?return_to=\(q)", method: .get) { #expect($0.status == .badRequest, "\(bad)") }
                }
                try await client.execute(uri: "/v1/sso/nowhere", method: .get) { #expect($0.status == .notFound) }
            }
            let audit = try await rig.store.auditLog(tenant: "a")
            #expect(audit.contains { $0.action == "session.create" && $0.subject == "\(ana.id) via acme" })
            #expect(audit.filter { $0.action == "session.failed" && $0.actor == "sso:acme" }.count == forgeries.count)
            let lines = "\(sink.all)"
            #expect(lines.contains("single sign-on refused"))
            for secret in secrets.withLock({ $0 }) where secret.count >= 8 { #expect(!lines.contains(secret), "a secret in the log") }
            await rig.store.close()
        }
    }

    @Test(arguments: Backend.available)
    func anInvitationIsAcceptedBySigningInThroughTheProvider(_ backend: Backend) async throws {
        let fake = try await FakeOIDC(clientID: "flowline-app", clientSecret: "client-secret-0123456789", redirectURIs: [Self.callback])
        try await fake.app.test(.live) { provider in
            fake.listening(port: try #require(provider.port))
            let acme = OIDCProvider(name: "acme", issuer: fake.issuer.withLock { $0 }, clientID: fake.clientID, clientSecret: fake.clientSecret)
            let rig = try await RouterTests.Rig(backend: backend, people: PeopleSettings(firstTenant: "a", publicURL: "https://flows.example", singleSignOn: [acme]))
            try await rig.app.test(.router) { client in
                func invite(_ email: String) async throws -> String {
                    try await client.execute(uri: "/v1/members/invitations", method: .post, headers: [.authorization: "Bearer \(rig.adminA)"],
                                             body: RouterTests.body(#"{"email": "\#(email)", "role": "agent"}"#)) { RouterTests.json($0)["token"].text }
                }
                let token = try await invite("new@a.example")
                // Signed in as someone else: the invitation stays unspent.
                fake.signedIn.withLock { $0 = FakeOIDC.Person(email: "other@a.example") }
                let wrong = try await Self.attempt(client, provider, query: "?invitation=\(token)&tenant=a")
                #expect(wrong.status == .forbidden && wrong.detail.contains("another email"))
                fake.signedIn.withLock { $0 = FakeOIDC.Person(email: "new@a.example", name: "Nova") }
                let joined = try await Self.attempt(client, provider, query: "?invitation=\(token)&tenant=a")
                #expect(joined.status == .seeOther && joined.session != nil, "\(joined.detail)")
                try await client.execute(uri: "/v1/session", method: .get, headers: [.cookie: try #require(joined.session)]) { r in
                    #expect(RouterTests.json(r)["email"] == "new@a.example" && RouterTests.json(r)["name"] == "Nova" && RouterTests.json(r)["role"] == "agent")
                }
                // Spent; and the person has no password to sign in with.
                try await client.execute(uri: "/v1/sso/acme?invitation=\(token)", method: .get) { #expect($0.status == .notFound) }
                #expect(try await PeopleTests.signIn(client, "new@a.example", "").status == .badRequest)
                #expect(try await PeopleTests.signIn(client, "new@a.example", "any password at all").status == .unauthorized)
            }
            #expect(try await rig.store.auditLog(tenant: "a").contains { $0.action == "member.join" })
            await rig.store.close()
        }
    }

    @Test func providersComeFromTheEnvironmentAndAreCheckedBeforeStart() throws {
        let env = ["FLOWLINE_OIDC_PROVIDERS": "google, acme-id", "FLOWLINE_OIDC_GOOGLE_CLIENT_ID": "g-id", "FLOWLINE_OIDC_GOOGLE_CLIENT_SECRET": "g-secret",
                   "FLOWLINE_OIDC_ACME_ID_ISSUER": "http://idp.example", "FLOWLINE_OIDC_ACME_ID_CLIENT_ID": "a"]
        let providers = OIDCProvider.providers(environment: env)
        #expect(providers.map(\.name) == ["google", "acme-id"] && providers[0].issuer == OIDCProvider.googleIssuer && providers[0].label == "Google")
        #expect(providers[0].problem() == nil)
        #expect(providers[1].problem()?.contains("https") == true, "http only on loopback")
        var acme = providers[1]
        acme.issuer = "https://idp.example"
        #expect(acme.problem() == "FLOWLINE_OIDC_ACME_ID_CLIENT_SECRET is missing")
        var config = ServerConfiguration()
        config.singleSignOn = [providers[0]]
        config.publicURL = "http://flows.example"
        #expect(throws: StartupError.self) { try config.validate() }
        config.publicURL = "https://flows.example"
        #expect(throws: Never.self) { try config.validate() }
    }

    /// Against a real `flowline serve`, configured from the environment as README.md says: a sign-in through the
    /// provider, a forged token refused, and nothing secret in the server's output.
    @Test(arguments: Backend.available)
    func aPersonSignsInThroughAProviderOnARealServer(_ backend: Backend) async throws {
        let fake = try await FakeOIDC(clientID: "flowline-app", clientSecret: "client-secret-0123456789", redirectURIs: [Self.callback])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-sso-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/flows", withIntermediateDirectories: true)
        let database = switch backend {
        case .sqlite: "sqlite:\(dir)/sso.db"
        case .postgres: try await TestPostgres.freshDatabase(try Backend.postgresURL())
        }
        try await fake.app.test(.live) { provider in
            fake.listening(port: try #require(provider.port))
            let server = try await ServeProcess(database: database, log: dir + "/serve.log", secretKey: SecretBox.generateKey(), flows: dir + "/flows",
                                                environment: [
                                                    "FLOWLINE_ADMIN_EMAIL": "ana@clinic.example", "FLOWLINE_ADMIN_PASSWORD": PeopleTests.password,
                                                    "FLOWLINE_BCRYPT_COST": "4", "FLOWLINE_PUBLIC_URL": "https://flows.example",
                                                    "FLOWLINE_OIDC_PROVIDERS": "acme", "FLOWLINE_OIDC_ACME_ISSUER": fake.issuer.withLock { $0 },
                                                    "FLOWLINE_OIDC_ACME_CLIENT_ID": fake.clientID, "FLOWLINE_OIDC_ACME_CLIENT_SECRET": fake.clientSecret,
                                                ])
            defer { _ = server.stop() }
            fake.signedIn.withLock { $0 = FakeOIDC.Person(email: "ana@clinic.example") }
            var secrets: [String] = [fake.clientSecret]
            func signIn() async throws -> (status: Int, session: String?, location: String?) {
                let start = try await server.api.get("/v1/sso/acme?return_to=/inbox")
                #expect(start.status == 303, "\(start.body)")
                let state = try #require(start.headers["Set-Cookie"].first { $0.hasPrefix(SSORoutes.stateCookie + "=") }?.split(separator: ";").first)
                let back = try await server.api.get(try #require(start.headers["Location"].first))
                let to = try #require(back.headers["Location"].first)
                let returned = try #require(URLComponents(string: to))
                secrets += [String(state.split(separator: "=")[1])] + (returned.queryItems ?? []).compactMap(\.value)
                let done = try await server.api.get(returned.path + "?" + (returned.percentEncodedQuery ?? ""), cookie: String(state))
                let session = done.headers["Set-Cookie"].first { $0.hasPrefix(People.cookie + "=") }?.split(separator: ";").first.map(String.init)
                return (done.status, session, done.headers["Location"].first)
            }
            let ok = try await signIn()
            #expect(ok.status == 303 && ok.location == "/inbox")
            let session = try #require(ok.session)
            secrets.append(session)
            let me = try await server.api.get("/v1/session", cookie: session)
            #expect(me.status == 200 && me.body["email"] == "ana@clinic.example" && me.body["role"] == "admin")
            fake.forgery.withLock { $0 = .wrongKey }
            let forged = try await signIn()
            #expect(forged.status == 401 && forged.session == nil)
            let output = server.output
            for secret in secrets where secret.count >= 8 { #expect(!output.contains(secret), "a secret in the server's output") }
        }
    }
}
