import Connectors
import Crypto
import FlowVM
import Foundation
import FlowlineTestKit
import Testing

/// WhatsApp webhook notifications shaped as the Cloud API documents them.
@Suite struct WhatsAppWebhookTests {
    static func envelope(_ value: String) -> [UInt8] {
        Array("""
        {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": \(value)}]}]}
        """.utf8)
    }

    static let metadata = #""messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}"#

    @Test func readsEveryKindOfMessage() throws {
        let body = Self.envelope("""
            {\(Self.metadata),
             "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
             "messages": [
               {"from": "16505551234", "id": "wamid.text", "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}},
               {"from": "16505551234", "id": "wamid.btn", "timestamp": "1749416384", "type": "interactive",
                "context": {"from": "15550783881", "id": "wamid.prev"},
                "interactive": {"type": "button_reply", "button_reply": {"id": "cancel-button", "title": "Cancel"}}},
               {"from": "16505551234", "id": "wamid.list", "timestamp": "1749416385", "type": "interactive",
                "interactive": {"type": "list_reply", "list_reply": {"id": "priority_express", "title": "Priority Mail Express", "description": "Next Day to 2 Days"}}},
               {"from": "16505551234", "id": "wamid.tpl", "timestamp": "1749416386", "type": "button", "button": {"payload": "yes-please", "text": "Yes"}},
               {"from": "16505551234", "id": "wamid.img", "timestamp": "1749416387", "type": "image",
                "image": {"caption": "the receipt", "mime_type": "image/jpeg", "sha256": "abc", "id": "1003383421387256"}},
               {"from": "16505551234", "id": "wamid.audio", "timestamp": "1749416388", "type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "id": "5555", "voice": true}},
               {"from": "16505551234", "id": "wamid.doc", "timestamp": "1749416389", "type": "document", "document": {"filename": "a.pdf", "id": "7777"}},
               {"from": "16505551234", "id": "wamid.loc", "timestamp": "1749416390", "type": "location",
                "location": {"address": "1 Hacker Way, Menlo Park, CA 94025", "latitude": 37.483, "longitude": -122.148, "name": "Main Office"}}
             ]}
            """)
        let n = try WhatsAppWebhook.parse(body)
        #expect(n.messages.map(\.id) == ["wamid.text", "wamid.btn", "wamid.list", "wamid.tpl", "wamid.img", "wamid.audio", "wamid.doc", "wamid.loc"])
        #expect(n.messages.allSatisfy { $0.phoneNumberID == "106540352242922" && $0.contact == "16505551234" && $0.name == "Sheena Nelson" })
        #expect(n.messages.map(\.text) == ["Does it come in another color?", "Cancel", "Priority Mail Express", "Yes", "the receipt", "", "", "Main Office"])
        #expect(n.messages.map(\.payload) == [nil, "cancel-button", "priority_express", "yes-please", nil, nil, nil, nil])
        #expect(n.messages.map(\.mediaID) == [nil, nil, nil, nil, "1003383421387256", "5555", "7777", nil])
        #expect(n.messages[7].location?["latitude"] == 37.483)
        #expect(n.messages[0].timestamp == 1_749_416_383)
    }

    @Test func contactsAreKeyedByUserIDWhenThePhoneIsMissing() throws {
        let body = Self.envelope("""
            {\(Self.metadata),
             "contacts": [{"profile": {"name": "Ana"}, "user_id": "BR.1234567890abcdef"}, {"profile": {"name": "Bruno"}, "wa_id": "5511988887777", "user_id": "BR.bruno"}],
             "messages": [
               {"from_user_id": "BR.1234567890abcdef", "id": "wamid.a", "timestamp": "1", "type": "text", "text": {"body": "oi"}},
               {"from": "5511988887777", "id": "wamid.b", "timestamp": "2", "type": "text", "text": {"body": "olá"}}
             ]}
            """)
        let n = try WhatsAppWebhook.parse(body)
        #expect(n.messages.map(\.contact) == ["BR.1234567890abcdef", "BR.bruno"], "the business-scoped id wins when there is one")
        #expect(n.messages.map(\.name) == ["Ana", "Bruno"])
        #expect(n.messages[0].waID == nil && n.messages[1].waID == "5511988887777")
    }

    @Test func readsStatusesWithTheirErrorCodes() throws {
        let body = Self.envelope("""
            {\(Self.metadata),
             "statuses": [
               {"id": "wamid.out1", "status": "delivered", "timestamp": "1750263773", "recipient_id": "16505551234"},
               {"id": "wamid.out2", "status": "failed", "timestamp": "1750263774", "recipient_id": "16505551234",
                "errors": [{"code": 131047, "title": "Re-engagement message", "error_data": {"details": "More than 24 hours have passed"}}]}
             ]}
            """)
        let n = try WhatsAppWebhook.parse(body)
        #expect(n.messages.isEmpty)
        #expect(n.statuses.map(\.status) == ["delivered", "failed"])
        #expect(n.statuses[1].errors == [.init(code: 131047, title: "Re-engagement message")])
        #expect(n.statuses[0].recipient == "16505551234")
    }

    @Test func malformedBodiesAreRefusedAndOddPartsSkipped() throws {
        for bad in ["", "not json", "[]", #"{"object": "page", "entry": []}"#, #"{"object": "whatsapp_business_account"}"#] {
            #expect(throws: WhatsAppWebhook.MalformedPayload.self, "\(bad)") { try WhatsAppWebhook.parse(Array(bad.utf8)) }
        }
        // A change without metadata, a message without an id or a sender: skipped, not fatal.
        let body = Self.envelope("""
            {"messages": [{"id": "x", "from": "1", "type": "text", "text": {"body": "no metadata"}}]}
            """)
        #expect(try WhatsAppWebhook.parse(body).messages.isEmpty)
        let partial = Self.envelope("""
            {\(Self.metadata), "messages": [{"from": "1", "type": "text"}, {"id": "wamid.nosender", "type": "text"},
                                           {"id": "wamid.ok", "from": "1", "timestamp": "3", "type": "reaction", "reaction": {"emoji": "👍"}}]}
            """)
        let n = try WhatsAppWebhook.parse(partial)
        #expect(n.messages.map(\.id) == ["wamid.ok"])
        #expect(n.messages[0].kind == "reaction" && n.messages[0].text == "")
    }

    @Test func signaturesAreCheckedOnTheRawBytes() {
        let body = Self.envelope("{\(Self.metadata)}")
        let secret = "app-secret-123"
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
        let header = "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
        #expect(WhatsAppWebhook.isSigned(body, header: header, appSecret: secret))
        #expect(WhatsAppWebhook.isSigned(body, header: header.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256="), appSecret: secret))
        #expect(!WhatsAppWebhook.isSigned(body + [0x20], header: header, appSecret: secret), "one byte more is another body")
        #expect(!WhatsAppWebhook.isSigned(body, header: header, appSecret: "other-secret"))
        #expect(!WhatsAppWebhook.isSigned(body, header: nil, appSecret: secret), "unsigned is forged")
        #expect(!WhatsAppWebhook.isSigned(body, header: String(header.dropLast()), appSecret: secret))
        #expect(!WhatsAppWebhook.isSigned(body, header: "sha1=" + header.dropFirst(7), appSecret: secret))
        #expect(!WhatsAppWebhook.isSigned(body, header: header, appSecret: ""))
    }

    @Test func theVerificationHandshakeEchoesOnlyForTheRightToken() {
        #expect(WhatsAppWebhook.challenge(mode: "subscribe", token: "tok", challenge: "1158201444", verifyToken: "tok") == "1158201444")
        #expect(WhatsAppWebhook.challenge(mode: "subscribe", token: "nope", challenge: "1", verifyToken: "tok") == nil)
        #expect(WhatsAppWebhook.challenge(mode: "unsubscribe", token: "tok", challenge: "1", verifyToken: "tok") == nil)
        #expect(WhatsAppWebhook.challenge(mode: "subscribe", token: nil, challenge: "1", verifyToken: "tok") == nil)
        #expect(WhatsAppWebhook.challenge(mode: "subscribe", token: "", challenge: "1", verifyToken: "") == nil)
    }

    // MARK: The fixtures pywa checks too (scripts/pywa_check.py)

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/whatsapp")

    static func fixture(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: fixtures.appendingPathComponent(name))) }

    /// Every fixture reads as expected.json says, the file pywa is held to as well.
    @Test func sharedFixturesParseAsExpected() throws {
        let expected = try #require(Value(json: String(decoding: try Self.fixture("expected.json"), as: UTF8.self)))
        guard case .map(let notifications) = expected["notifications"] else { Issue.record("no notifications"); return }
        #expect(notifications.count >= 12)
        for (name, want) in notifications.sorted(by: { $0.key < $1.key }) {
            let parsed = try WhatsAppWebhook.parse(try Self.fixture(name))
            if want["kind"] == "status" {
                let status = try #require(parsed.statuses.first, "\(name)")
                #expect(status.messageID == want["id"].text && status.status == want["status"].text, "\(name)")
                #expect(Value.list(status.errors.map { .number(Double($0.code)) }) == want["error_codes"], "\(name)")
                continue
            }
            let m = try #require(parsed.messages.first, "\(name)")
            let location: Value = m.location.map { ["latitude": $0["latitude"], "longitude": $0["longitude"]] } ?? .null
            let got: Value = [
                "id": .string(m.id), "type": .string(m.kind), "user_id": m.userID.map(Value.string) ?? .null,
                "wa_id": m.waID.map(Value.string) ?? .null, "name": m.name.map(Value.string) ?? .null, "text": .string(m.text),
                "payload": m.payload.map(Value.string) ?? .null, "media_id": m.mediaID.map(Value.string) ?? .null, "location": location,
            ]
            for key in ["id", "type", "user_id", "wa_id", "name", "text", "payload", "media_id", "location"] {
                #expect(got[key] == want[key], "\(name): \(key)")
            }
            #expect(m.contact == (m.userID ?? m.waID), "contacts are keyed by user_id, then wa_id")
        }
    }

    @Test func sharedSignaturesVerifyAsExpected() throws {
        let expected = try #require(Value(json: String(decoding: try Self.fixture("expected.json"), as: UTF8.self)))
        guard case .list(let cases) = expected["signatures"] else { Issue.record("no signatures"); return }
        #expect(cases.count >= 5)
        for c in cases {
            let header = c["header"].text
            let verdict = WhatsAppWebhook.isSigned(try Self.fixture(c["file"].text), header: header.isEmpty ? nil : header, appSecret: c["secret"].text)
            #expect(verdict == (c["valid"] == true), "\(c)")
        }
    }
}
