import Connectors
import FlowEngine
import FlowVM
import Foundation
import NIOCore
import NIOPosix
import FlowlineTestKit
import Testing

/// `SMTPClient` and `email.send` against aiosmtpd on loopback (scripts/peers/smtp.py): STARTTLS then AUTH, implicit
/// TLS, 4xx and 5xx replies, a server without STARTTLS, an untrusted certificate, and servers that hang or hang up.
@Suite struct SMTPClientTests {
    struct Peer {
        let starttls: Int, tls: Int, plain: Int
        let ca: String
        let spool: String

        init() throws {
            let ports = try FlowlineTestKit.Peer.value("FLOWLINE_TEST_SMTP"), ca = try FlowlineTestKit.Peer.value("FLOWLINE_TEST_SMTP_CA")
            let spool = try FlowlineTestKit.Peer.value("FLOWLINE_TEST_SMTP_SPOOL")
            let p = ports.split(separator: ",").compactMap { Int($0) }
            guard p.count == 3, let pem = try? String(contentsOfFile: ca, encoding: .utf8) else {
                // Set but unusable is never a skip.
                Issue.record("FLOWLINE_TEST_SMTP is '\(ports)' and its CA \(ca): scripts/peers.sh starts the SMTP peer")
                throw FlowlineTestKit.Peer.Missing(description: "the SMTP peer is unusable")
            }
            (starttls, tls, plain, self.ca, self.spool) = (p[0], p[1], p[2], pem, spool)
        }

        func client(_ port: Int, _ security: SMTPClient.Security, password: String? = "s3cret-pass", mechanism: SMTPClient.AuthMechanism? = nil,
                    trusted: Bool = true) -> SMTPClient {
            SMTPClient(.init(host: "localhost", port: port, security: security, username: password == nil ? nil : "flowline", password: password,
                             trustedCertificatePEM: trusted ? ca : nil, authMechanism: mechanism))
        }

        /// The message sent to `recipient`, as the server stored it, with its envelope; waits for it.
        func received(_ recipient: String) async throws -> (data: String, envelope: Value) {
            try await Peers.eventually("\(recipient) has mail", seconds: 5) {
                for file in try FileManager.default.contentsOfDirectory(atPath: spool) where file.hasSuffix(".json") {
                    let envelope = Value(json: try String(contentsOfFile: spool + "/" + file, encoding: .utf8)) ?? .null
                    if envelope["rcpt_tos"] == [.string(recipient)] {
                        let data = try String(contentsOfFile: spool + "/" + file.replacingOccurrences(of: ".json", with: ".eml"), encoding: .utf8)
                        return (data, envelope)
                    }
                }
                return nil
            }
        }
    }

    static func unique(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(8).lowercased())@example.com" }
    /// Generous: a send that works on an idle machine may wait on a Python peer sharing two loaded cores (10 s was
    /// too little at the start of a CI run). The hang tests set their own short deadline.
    static let deadline: @Sendable () -> ContinuousClock.Instant = { .now + .seconds(60) }

    static func failure(_ body: () async throws -> Void) async -> ConnectorError? {
        do { try await body() } catch let e as ConnectorError { return e } catch { Issue.record("not a ConnectorError: \(error)") }
        return nil
    }

    @Test func startTLSThenAuthPlainDeliversARFC5322MessageWithDotStuffing() async throws {
        let peer = try Peer()
        let to = Self.unique("ana")
        let email = EmailConnector(smtp: peer.client(peer.starttls, .starttls), from: "Clínica Sol <clinic@example.com>")
        let result = try await email.perform(action: "email.send", parameters: [
            "to": .string(to), "subject": "Recibo da sua consulta — obrigado!",
            "text": "Olá Ana,\n.this line starts with a dot\n..and this with two\nTotal: R$ 150,00", "html": "<p>Olá <b>Ana</b></p>",
        ], context: ConnectorContext(tenant: "t", conversation: "c", idempotencyKey: "c:7", attempt: 1))
        let (data, envelope) = try await peer.received(to)
        #expect(envelope["user"] == "flowline", "authenticated after STARTTLS")
        #expect(envelope["mail_from"] == "clinic@example.com")
        #expect(result["id"] == .string(EmailConnector.messageID(key: "c:7", from: "clinic@example.com")))
        #expect(data.contains("Message-ID: \(result["id"].text)\r\n"))
        #expect(data.contains("Date: ") && data.contains("MIME-Version: 1.0\r\n"))
        #expect(data.contains("Content-Type: multipart/alternative; boundary="))
        // Dot-stuffed on the wire, and unstuffed by the server: the lines arrive exactly as written.
        #expect(data.contains("\r\n.this line starts with a dot\r\n..and this with two\r\n"))
        // The subject is RFC 2047 encoded words that decode to the original.
        let subject = try #require(data.components(separatedBy: "\r\n").drop { !$0.hasPrefix("Subject: ") }.prefix { $0.hasPrefix("Subject: ") || $0.hasPrefix(" ") })
        let decoded = subject.joined().replacingOccurrences(of: "Subject: ", with: "").split(separator: " ").map { word -> String in
            let base64 = word.replacingOccurrences(of: "=?UTF-8?B?", with: "").replacingOccurrences(of: "?=", with: "")
            return String(decoding: Data(base64Encoded: base64) ?? Data(), as: UTF8.self)
        }.joined()
        #expect(decoded == "Recibo da sua consulta — obrigado!")
    }

    @Test func authLoginAndImplicitTLSWork() async throws {
        let peer = try Peer()
        let login = Self.unique("login"), implicit = Self.unique("implicit")
        try await peer.client(peer.starttls, .starttls, mechanism: .login).send(
            from: "a@example.com", to: [login], data: "Subject: login\r\n\r\nhi\r\n", deadline: Self.deadline())
        try await peer.client(peer.tls, .tls).send(from: "a@example.com", to: [implicit], data: "Subject: tls\r\n\r\nhi\r\n", deadline: Self.deadline())
        #expect(try await peer.received(login).envelope["user"] == "flowline")
        #expect(try await peer.received(implicit).envelope["port"] == .number(Double(peer.tls)))
    }

    @Test func repliesDecideRetries() async throws {
        let peer = try Peer()
        let client = peer.client(peer.starttls, .starttls)
        let busy = await Self.failure { try await client.send(from: "a@example.com", to: ["busy@example.com"], data: "x\r\n", deadline: Self.deadline()) }
        #expect(busy?.code == "smtp_451" && busy?.retryable == true, "4xx is temporary")
        let nobody = await Self.failure { try await client.send(from: "a@example.com", to: ["nobody@example.com"], data: "x\r\n", deadline: Self.deadline()) }
        #expect(nobody?.code == "smtp_550" && nobody?.retryable == false, "5xx is permanent")
        let wrong = await Self.failure {
            try await peer.client(peer.starttls, .starttls, password: "wrong-password").send(
                from: "a@example.com", to: [Self.unique("x")], data: "x\r\n", deadline: Self.deadline())
        }
        #expect(wrong?.code == "smtp_535" && wrong?.retryable == false)
        #expect(wrong?.description.contains("wrong-password") == false)
    }

    @Test func noPlainTextFallbackAndNoUntrustedCertificate() async throws {
        let peer = try Peer()
        let plain = Self.unique("plain")
        let refused = await Self.failure {
            try await peer.client(peer.plain, .starttls).send(from: "a@example.com", to: [plain], data: "x\r\n", deadline: Self.deadline())
        }
        #expect(refused?.code == "smtp_no_starttls" && refused?.retryable == false)
        let untrusted = await Self.failure {
            try await peer.client(peer.starttls, .starttls, trusted: false).send(from: "a@example.com", to: [Self.unique("u")], data: "x\r\n",
                                                                              deadline: Self.deadline())
        }
        #expect(untrusted?.code == "smtp_tls" && untrusted?.retryable == false)
        // Sending in the clear is possible only when asked for, to a server without AUTH.
        try await peer.client(peer.plain, .none, password: nil).send(from: "a@example.com", to: [plain], data: "Subject: p\r\n\r\nx\r\n",
                                                                     deadline: Self.deadline())
        #expect(try await peer.received(plain).envelope["port"] == .number(Double(peer.plain)))
    }

    @Test func serversThatHangOrHangUpFailRetryably() async throws {
        let (silent, silentPort) = try await silentServer(hangUp: false)
        let (rude, rudePort) = try await silentServer(hangUp: true)
        let start = ContinuousClock.now
        let hang = await Self.failure {
            try await SMTPClient(.init(host: "127.0.0.1", port: silentPort, security: .none)).send(
                from: "a@example.com", to: ["b@example.com"], data: "x\r\n", deadline: .now + .milliseconds(500))
        }
        #expect(hang?.code == "smtp_timeout" && hang?.retryable == true)
        #expect(ContinuousClock.now - start < .seconds(5), "the deadline ends the wait")
        let drop = await Self.failure {
            try await SMTPClient(.init(host: "127.0.0.1", port: rudePort, security: .none)).send(
                from: "a@example.com", to: ["b@example.com"], data: "x\r\n", deadline: Self.deadline())
        }
        #expect(drop?.code == "smtp_connection" && drop?.retryable == true)
        try await silent.close()
        try await rude.close()
    }

    /// `use: email.send` in a flow, with the tenant's email channel (its password sealed), through the engine.
    @Test func aFlowSendsMailThroughTheTenantsEmailChannel() async throws {
        let peer = try Peer()
        let to = Self.unique("receipt")
        let flow = """
            flow: receipt
            trigger: { channel: api }
            start: mail
            blocks:
              mail:
                use: email.send
                with: { to: "\(to)", subject: "Receipt", text: "Thanks, {{ contact.name ?? 'friend' }}" }
                save: sent
                next: done
              done:
                end: "Sent {{ sent.id }}"
            """
        let rig = try await RouterTests.Rig()
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/receipt", method: .put, headers: a, body: RouterTests.body(flow))
            try await client.execute(uri: "/v1/flows/receipt/publish", method: .post, headers: a) { #expect($0.status == .created) }
            let channel: Value = ["kind": "email", "name": "mail", "host": "localhost", "port": .number(Double(peer.starttls)),
                                  "from": "clinic@example.com", "username": "flowline", "password": "s3cret-pass", "ca_certificate": .string(peer.ca)]
            try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body(channel.jsonText)) { r in
                #expect(r.status == .created)
                #expect(!String(buffer: r.body).contains("s3cret-pass"))
            }
            let api = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                               body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
            try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                     body: RouterTests.body(#"{"from": "5", "text": "hi", "id": "m1", "name": "Bia"}"#))
            try await rig.engine.drain()
            let (data, _) = try await peer.received(to)
            #expect(data.contains("Thanks, Bia"))
            let conversation = try #require(try await rig.store.conversations(tenant: "a", status: .ended, contact: "5").first)
            let texts = try await rig.store.messages(conversation: conversation.id, tenant: "a").map(\.text)
            #expect(texts.last?.hasPrefix("Sent <") == true)
        }
        await rig.store.close()
    }
}
