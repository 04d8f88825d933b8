import AsyncHTTPClient
import FlowEngine
import FlowVM
import Foundation
import NIOCore

/// Sends a flow's messages through the WhatsApp Cloud API: `POST {graph}/{version}/{phone_number_id}/messages`
/// with the number's access token. Text, reply buttons (up to 3) and lists become the Graph's `text` and
/// `interactive` messages; a button's id is its title, so a tap comes back as the same text and payload.
///
/// Every message carries its outbox key as `biz_opaque_callback_data`, which Meta returns in the message's status
/// notifications: a repeat after a crash carries the same key as the first.
///
/// Failures are decided by the Graph's `error.code`, never the HTTP status: 131047 (the 24-hour window is
/// closed) and 131026 (undeliverable) are permanent, 130429 and 131056 (rate limits) are retried.
public struct WhatsAppCloudAPI: Sendable {
    public let graphURL: String
    public var version: String
    public var phoneNumberID: String
    private let accessToken: String

    /// - Parameter graphURL: where the Graph API is (a proxy, a test double); Meta's own when nil.
    public init(phoneNumberID: String, accessToken: String, graphURL: String? = nil, version: String = "v21.0") {
        let graphURL = graphURL ?? "https://graph.facebook.com"
        self.phoneNumberID = phoneNumberID
        self.accessToken = accessToken
        self.graphURL = graphURL.hasSuffix("/") ? String(graphURL.dropLast()) : graphURL
        self.version = version
    }

    /// The Graph request body for `message` (the outbox's `{text, buttons?, list?}`) to `to`.
    public static func body(to: WhatsAppRecipient, message: Value) -> Value {
        var body = to.fields
        let text = message["text"].text
        if case .list(let buttons) = message["buttons"], !buttons.isEmpty {
            body["type"] = "interactive"
            body["interactive"] = [
                "type": "button", "body": ["text": .string(text)],
                "action": ["buttons": .list(buttons.prefix(3).map { b in ["type": "reply", "reply": ["id": .string(b.text), "title": .string(b.text)]] })],
            ]
        } else if case .map = message["list"], case .list(let rows) = message["list"]["rows"] {
            body["type"] = "interactive"
            body["interactive"] = [
                "type": "list", "body": ["text": .string(text)],
                "action": ["button": message["list"]["button"], "sections": [["rows": .list(rows.map { r in
                    var row: [String: Value] = ["id": r["id"], "title": r["title"]]
                    if case .string(let d) = r["description"], !d.isEmpty { row["description"] = .string(d) }
                    return .map(row)
                })]]],
            ]
        } else {
            body["type"] = "text"
            body["text"] = ["body": .string(text), "preview_url": false]
        }
        return .map(body)
    }

    /// An approved template (`template.name` in `language`), its body's `{{1}}`, `{{2}}`… filled with `parameters`.
    /// Templates are what may be sent outside the 24-hour customer-service window.
    public static func templateBody(to: WhatsAppRecipient, name: String, language: String, parameters: [String]) -> Value {
        var template: [String: Value] = ["name": .string(name), "language": ["code": .string(language)]]
        if !parameters.isEmpty {
            template["components"] = [["type": "body", "parameters": .list(parameters.map { ["type": "text", "text": .string($0)] })]]
        }
        return .map(to.fields.merging(["type": "template", "template": .map(template)]) { a, _ in a })
    }

    /// Media by the id of an upload or by a public link: `image`, `audio`, `video`, `document` or `sticker`, with an
    /// optional caption (not for audio and stickers) and file name (documents).
    public static func mediaBody(to: WhatsAppRecipient, type: String, id: String?, link: String?, caption: String?, filename: String?) -> Value {
        var media: [String: Value] = [:]
        if let id { media["id"] = .string(id) } else if let link { media["link"] = .string(link) }
        if let caption, !["audio", "sticker"].contains(type) { media["caption"] = .string(caption) }
        if let filename, type == "document" { media["filename"] = .string(filename) }
        return .map(to.fields.merging(["type": .string(type), type: .map(media)]) { a, _ in a })
    }

    /// Sends `message` (the outbox's `{text, buttons?, list?}`) to `to`; answers `{"id": "wamid…"}`.
    public func send(to: WhatsAppRecipient, message: Value, context: ConnectorContext) async throws -> Value {
        try await post(Self.body(to: to, message: message), context: context)
    }

    /// Marks an inbound message read (blue ticks), as Meta asks of every business that has processed one.
    public func markRead(_ messageID: String, context: ConnectorContext) async throws {
        _ = try await post(["messaging_product": "whatsapp", "status": "read", "message_id": .string(messageID)], context: context)
    }

    /// POSTs a Graph message body; answers `{"id": "wamid…"}` (or `{}` for a read receipt).
    public func post(_ body: Value, context: ConnectorContext) async throws -> Value {
        var request = HTTPClientRequest(url: "\(graphURL)/\(version)/\(phoneNumberID)/messages")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(accessToken)")
        request.headers.add(name: "Content-Type", value: "application/json")
        var body = body
        // The outbox key rides along (Meta echoes it in this message's status notifications), so a receiver can tell a
        // repeat after a crash from a new message.
        if case .map(var fields) = body, fields["status"] == nil, context.idempotencyKey.utf8.count <= 512 {
            fields["biz_opaque_callback_data"] = .string(context.idempotencyKey)
            body = .map(fields)
        }
        request.body = .bytes(ByteBuffer(string: body.jsonText))
        let (response, bytes) = try await context.send(request, to: "the WhatsApp Cloud API")
        let answer = Value(json: String(buffer: bytes)) ?? .null
        if (200..<300).contains(Int(response.status.code)) {
            if case .string(let id) = answer["messages"][0]["id"] { return ["id": .string(id)] }
            if answer["success"] == true { return [:] }
        }
        throw Self.failure(status: Int(response.status.code), answer: answer,
                           retryAfter: HTTPWebhookConnector.retryAfter(response.headers.first(name: "Retry-After"), now: Date()))
    }

    /// A Graph error as a connector failure, by `error.code`. Messages name the code, never the Graph's text.
    public static func failure(status: Int, answer: Value, retryAfter: Int64? = nil) -> ConnectorError {
        let code: Int = if case .number(let n) = answer["error"]["code"] { Int(n) } else { 0 }
        switch code {
        case 131047:
            return ConnectorError(code: "whatsapp_131047", message: "the 24-hour customer-service window is closed: only a template can be sent",
                                  retryable: false)
        case 130429, 131056, 131048, 80007, 4:
            return ConnectorError(code: "whatsapp_\(code)", message: "WhatsApp rate limit (code \(code))", retryable: true,
                                  retryAfter: retryAfter ?? 60)
        case 131026:
            return ConnectorError(code: "whatsapp_131026", message: "the message cannot be delivered to this number", retryable: false)
        case 190:
            return ConnectorError(code: "whatsapp_190", message: "the channel's access token is invalid or expired", retryable: false)
        case 0:
            return ConnectorError(code: "whatsapp_http_\(status)", message: "the WhatsApp Cloud API answered \(status)", retryable: status >= 500,
                                  retryAfter: retryAfter)
        default:
            return ConnectorError(code: "whatsapp_\(code)", message: "the WhatsApp Cloud API refused the message (code \(code))",
                                  retryable: status >= 500, retryAfter: retryAfter)
        }
    }
}

extension WhatsAppCloudAPI {
    /// The actions it performs, with their JSON Schemas.
    public static let actions: [ActionDefinition] = [
        ActionDefinition(
            name: "whatsapp.template",
            summary: "Send an approved WhatsApp template (works outside the 24-hour window)",
            parameters: ActionSchema.object([
                "name": ActionSchema.nonEmpty,
                "language": ["type": "string", "minLength": 2],
                "parameters": ["type": "array", "items": ActionSchema.string],
            ], required: ["name", "language"]),
            result: ActionSchema.object(["id": ActionSchema.string])
        ),
        ActionDefinition(
            name: "whatsapp.media",
            summary: "Send an image, audio, video, document or sticker on WhatsApp, by uploaded media id or public link",
            parameters: ActionSchema.object([
                "type": ["type": "string", "enum": ["image", "audio", "video", "document", "sticker"]],
                "id": ActionSchema.nonEmpty,
                "link": ["type": "string", "pattern": "^https://"],
                "caption": ActionSchema.string,
                "filename": ActionSchema.string,
            ], required: ["type"]),
            result: ActionSchema.object(["id": ActionSchema.string])
        ),
    ]
}
