import Crypto
import FlowEngine
import FlowVM
import Foundation

/// The WhatsApp Cloud API's webhook, as pure functions: the verification handshake, the signature on the raw
/// body, and the notifications inside (`entry[].changes[].value`: messages, statuses, contacts). The server's
/// route (`/webhooks/whatsapp/{channelId}`) will use these; they are tested on their own.
public enum WhatsAppWebhook {
    /// The `GET` handshake: the challenge to echo when `hub.mode` is `subscribe` and the token matches, else nil
    /// (answer 403).
    public static func challenge(mode: String?, token: String?, challenge: String?, verifyToken: String) -> String? {
        guard mode == "subscribe", let token, let challenge, !verifyToken.isEmpty,
              SecretBox.constantTimeEqual(Array(token.utf8), Array(verifyToken.utf8)) else { return nil }
        return challenge
    }

    /// Whether `X-Hub-Signature-256: sha256=<hex>` is the HMAC-SHA256 of exactly these bytes under the app
    /// secret. Compared in constant time; an absent or malformed header is a forgery.
    public static func isSigned(_ body: [UInt8], header: String?, appSecret: String) -> Bool {
        guard let header, header.hasPrefix("sha256="), !appSecret.isEmpty else { return false }
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(appSecret.utf8)))
        let expected = Array(mac.map { String(format: "%02x", $0) }.joined().utf8)
        return SecretBox.constantTimeEqual(Array(header.dropFirst("sha256=".count).lowercased().utf8), expected)
    }

    /// An inbound message.
    public struct Message: Sendable, Hashable {
        /// The business number it was sent to: routes it to a channel.
        public var phoneNumberID: String
        /// `wamid.…`: the de-duplication key.
        public var id: String
        /// Who wrote: the business-scoped user id when present, else the WhatsApp id or phone number.
        public var contact: String
        public var userID: String?
        public var waID: String?
        public var name: String?
        public var timestamp: Int64
        /// `text`, `button`, `interactive`, `image`, `audio`, `document`, `video`, `sticker`, `location`, …
        public var kind: String
        /// The text, a tapped button's or row's title, a caption, or a location's name; empty otherwise.
        public var text: String
        /// A tapped button's or row's id (what a flow's branches compare).
        public var payload: String?
        public var mediaID: String?
        /// `{latitude, longitude, name?, address?}` for locations.
        public var location: Value?
    }

    /// A status of a message the business sent.
    public struct Status: Sendable, Hashable {
        public struct Failure: Sendable, Hashable {
            public var code: Int
            public var title: String
            public init(code: Int, title: String) {
                self.code = code
                self.title = title
            }
        }
        public var phoneNumberID: String
        public var messageID: String
        /// `sent`, `delivered`, `read` or `failed`.
        public var status: String
        public var recipient: String
        public var timestamp: Int64
        public var errors: [Failure]
    }

    public struct Notification: Sendable, Hashable {
        public var messages: [Message] = []
        public var statuses: [Status] = []
    }

    public struct MalformedPayload: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Every message and status in a notification body. Throws when the body is not a WhatsApp notification.
    public static func parse(_ body: [UInt8]) throws -> Notification {
        guard let root = Value(json: String(decoding: body, as: UTF8.self)), case .map = root else {
            throw MalformedPayload(description: "the body is not a JSON object")
        }
        guard root["object"] == "whatsapp_business_account", case .list(let entries) = root["entry"] else {
            throw MalformedPayload(description: "not a whatsapp_business_account notification")
        }
        var out = Notification()
        for entry in entries {
            guard case .list(let changes) = entry["changes"] else { continue }
            for change in changes {
                let value = change["value"]
                let phoneNumberID = value["metadata"]["phone_number_id"].text
                guard !phoneNumberID.isEmpty else { continue }
                var contacts: [Value] = []
                if case .list(let c) = value["contacts"] { contacts = c }
                if case .list(let messages) = value["messages"] {
                    for m in messages {
                        if let message = Self.message(m, contacts: contacts, phoneNumberID: phoneNumberID) { out.messages.append(message) }
                    }
                }
                if case .list(let statuses) = value["statuses"] {
                    for s in statuses where !s["id"].text.isEmpty {
                        var failures: [Status.Failure] = []
                        if case .list(let errors) = s["errors"] {
                            failures = errors.map { e in
                                let code: Int = if case .number(let n) = e["code"] { Int(n) } else { Int(e["code"].text) ?? 0 }
                                return Status.Failure(code: code, title: e["title"].text)
                            }
                        }
                        out.statuses.append(Status(
                            phoneNumberID: phoneNumberID, messageID: s["id"].text, status: s["status"].text,
                            recipient: s["recipient_user_id"].nonEmptyText ?? s["recipient_id"].text,
                            timestamp: Int64(s["timestamp"].text) ?? 0, errors: failures))
                    }
                }
            }
        }
        return out
    }

    private static func message(_ m: Value, contacts: [Value], phoneNumberID: String) -> Message? {
        let id = m["id"].text
        guard !id.isEmpty else { return nil }
        let from = m["from"].nonEmptyText
        let fromUser = m["from_user_id"].nonEmptyText
        // The contact entry of this sender: by user id, by WhatsApp id, or the only one there is when it names no
        // one else.
        let contact = contacts.first { c in
            (fromUser != nil && c["user_id"].nonEmptyText == fromUser) || (from != nil && c["wa_id"].nonEmptyText == from)
        } ?? contacts.first { c in
            contacts.count == 1 && (from == nil || c["wa_id"].nonEmptyText == nil) && (fromUser == nil || c["user_id"].nonEmptyText == nil)
        }
        let userID = fromUser ?? contact.flatMap { $0["user_id"].nonEmptyText }
        let waID = contact.flatMap { $0["wa_id"].nonEmptyText } ?? from
        guard let who = userID ?? waID else { return nil }

        let kind = m["type"].text
        var message = Message(phoneNumberID: phoneNumberID, id: id, contact: who, userID: userID, waID: waID,
                              name: contact.flatMap { $0["profile"]["name"].nonEmptyText }, timestamp: Int64(m["timestamp"].text) ?? 0,
                              kind: kind, text: "", payload: nil, mediaID: nil, location: nil)
        switch kind {
        case "text":
            message.text = m["text"]["body"].text
        case "button":
            message.text = m["button"]["text"].text
            message.payload = m["button"]["payload"].nonEmptyText
        case "interactive":
            let reply = m["interactive"][m["interactive"]["type"].text]
            message.text = reply["title"].text
            message.payload = reply["id"].nonEmptyText
        case "image", "audio", "document", "video", "sticker":
            message.mediaID = m[kind]["id"].nonEmptyText
            message.text = m[kind]["caption"].text
        case "location":
            let l = m["location"]
            message.location = ["latitude": l["latitude"], "longitude": l["longitude"], "name": l["name"], "address": l["address"]]
            message.text = l["name"].text
        default:
            break
        }
        return message
    }
}
