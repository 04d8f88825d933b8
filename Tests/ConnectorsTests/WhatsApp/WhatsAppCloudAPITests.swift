import Connectors
import FlowEngine
import FlowVM
import FlowlineTestKit
import Testing

/// The Cloud API's request bodies and error mapping (sending through a fake Graph API is in ServerTests).
@Suite struct WhatsAppCloudAPITests {
    @Test func messagesBecomeTextOrInteractiveBodies() {
        let text = WhatsAppCloudAPI.body(to: WhatsAppRecipient(contact: "16505551234"), message: ["text": "Hi there"])
        #expect(text == ["messaging_product": "whatsapp", "recipient_type": "individual", "to": "16505551234", "type": "text",
                         "text": ["body": "Hi there", "preview_url": false]])
        let buttons = WhatsAppCloudAPI.body(to: WhatsAppRecipient(contact: "15550000001"), message: ["text": "Pick", "buttons": ["Yes", "No"]])
        #expect(buttons["type"] == "interactive")
        #expect(buttons["interactive"]["type"] == "button")
        #expect(buttons["interactive"]["body"]["text"] == "Pick")
        #expect(buttons["interactive"]["action"]["buttons"] == [
            ["type": "reply", "reply": ["id": "Yes", "title": "Yes"]], ["type": "reply", "reply": ["id": "No", "title": "No"]],
        ])
        let list = WhatsAppCloudAPI.body(to: WhatsAppRecipient(contact: "15550000001"), message: [
            "text": "Which?", "list": ["button": "Options", "rows": [["id": "a", "title": "A", "description": "first"], ["id": "b", "title": "B", "description": .null]]],
        ])
        #expect(list["interactive"]["type"] == "list")
        #expect(list["interactive"]["action"]["button"] == "Options")
        #expect(list["interactive"]["action"]["sections"][0]["rows"] == [["id": "a", "title": "A", "description": "first"], ["id": "b", "title": "B"]])
    }

    /// A contact known by its business-scoped user id is addressed with `recipient`, never with the BSUID in `to`
    /// (which takes phone numbers); when its phone number is known too, both go, and the Cloud API prefers the phone.
    @Test func contactsKnownByBSUIDAreAddressedAsRecipients() {
        let only = WhatsAppCloudAPI.body(to: WhatsAppRecipient(contact: "US.13491208655302741918"), message: ["text": "Hi"])
        #expect(only["recipient"] == "US.13491208655302741918")
        #expect(only["to"] == .null, "a BSUID is not a phone number")
        let both = WhatsAppCloudAPI.templateBody(to: WhatsAppRecipient(contact: "BR.e2e", phone: "5511999990000"), name: "t", language: "pt_BR",
                                                 parameters: [])
        #expect(both["recipient"] == "BR.e2e" && both["to"] == "5511999990000")
        let parent = WhatsAppCloudAPI.mediaBody(to: WhatsAppRecipient(contact: "US.ENT.11815799212886844830", phone: "not a phone"),
                                                type: "image", id: "m1", link: nil, caption: nil, filename: nil)
        #expect(parent["recipient"] == "US.ENT.11815799212886844830" && parent["to"] == .null)
        let phone = WhatsAppCloudAPI.body(to: WhatsAppRecipient(contact: "+5511999990000"), message: ["text": "Hi"])
        #expect(phone["to"] == "+5511999990000" && phone["recipient"] == .null)
        for id in ["US.13491208655302741918", "BR.e2e", "US.ENT.1"] { #expect(WhatsAppRecipient.isUserID(id), "\(id)") }
        for id in ["5511999990000", "us.123", "U.123", "US.", "US..1", "window-closed"] { #expect(!WhatsAppRecipient.isUserID(id), "\(id)") }
    }

    @Test func graphErrorsAreDecidedByCodeNotStatus() {
        func graph(_ code: Int) -> Value { ["error": ["message": .string("(#\(code)) something"), "type": "OAuthException", "code": .number(Double(code))]] }
        let window = WhatsAppCloudAPI.failure(status: 400, answer: graph(131047))
        #expect(window.code == "whatsapp_131047" && !window.retryable && window.message.contains("24-hour"))
        for limit in [130429, 131056] {
            let e = WhatsAppCloudAPI.failure(status: 400, answer: graph(limit))
            #expect(e.retryable && e.retryAfter == 60, "\(limit) is a rate limit, retried even on a 400")
        }
        #expect(WhatsAppCloudAPI.failure(status: 400, answer: graph(130429), retryAfter: 5).retryAfter == 5)
        #expect(!WhatsAppCloudAPI.failure(status: 400, answer: graph(131026)).retryable)
        #expect(!WhatsAppCloudAPI.failure(status: 401, answer: graph(190)).retryable)
        #expect(WhatsAppCloudAPI.failure(status: 503, answer: .null).retryable, "no Graph error body: decided by status")
        #expect(!WhatsAppCloudAPI.failure(status: 400, answer: graph(100)).retryable)
        #expect(!WhatsAppCloudAPI.failure(status: 400, answer: graph(131047)).message.contains("something"), "the Graph's text is not echoed")
    }
}
