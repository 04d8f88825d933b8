import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// A small, faithful WhatsApp Cloud API on 127.0.0.1, written from Meta's documented contract for
/// `POST /{version}/{phone_number_id}/messages`: a bearer token, `messaging_product: whatsapp`, a recipient, and
/// a `text` or `interactive` body within the documented limits. It answers `{messaging_product, contacts,
/// messages: [{id}]}`, or a Graph error (`{"error": {"code", "message", "type"}}`) for scripted recipients:
/// `window-closed` → 131047 (for anything but a template), `rate-limited` → 130429, `unreachable-number` → 131026.
/// Read receipts (`status: read`) answer `{"success": true}` and are kept apart, in `reads`.
final class FakeGraphAPI: Sendable {
    let token: String
    let sent = Mutex<[Value]>([])
    let reads = Mutex<[String]>([])

    init(token: String) {
        self.token = token
    }

    var app: some ApplicationProtocol {
        let router = Router()
        router.post("{version}/{phone}/messages") { request, _ -> Response in
            guard request.headers[.authorization] == "Bearer \(self.token)" else {
                return Self.error(.unauthorized, code: 190, "Invalid OAuth access token.")
            }
            let body = Value(json: String(buffer: try await request.body.collect(upTo: 1 << 20))) ?? .null
            if body["messaging_product"] == "whatsapp", body["status"] == "read" {
                guard case .string(let id) = body["message_id"], id.hasPrefix("wamid.") else { return Self.error(.badRequest, code: 100, "Invalid parameter") }
                self.reads.withLock { $0.append(id) }
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"success": true}"#)))
            }
            guard body["messaging_product"] == "whatsapp", case .string(let to) = body["to"], !to.isEmpty else {
                return Self.error(.badRequest, code: 100, "Invalid parameter")
            }
            switch body["type"].text {
            case "text":
                guard case .string(let text) = body["text"]["body"], !text.isEmpty, text.count <= 4096 else {
                    return Self.error(.badRequest, code: 100, "Invalid parameter")
                }
            case "interactive":
                let buttons = body["interactive"]["action"]["buttons"]
                if case .list(let list) = buttons, list.isEmpty || list.count > 3 || list.contains(where: { $0["reply"]["title"].text.count > 20 }) {
                    return Self.error(.badRequest, code: 131009, "Parameter value is not valid")
                }
            case "template":
                guard case .string(let name) = body["template"]["name"], !name.isEmpty, case .string = body["template"]["language"]["code"] else {
                    return Self.error(.badRequest, code: 100, "Invalid parameter")
                }
                guard name != "unapproved" else { return Self.error(.notFound, code: 132001, "Template name does not exist in the translation") }
            case "image", "audio", "video", "document", "sticker":
                let media = body[body["type"].text]
                guard (media["id"] != .null) != (media["link"] != .null) else { return Self.error(.badRequest, code: 100, "Invalid parameter") }
            default:
                return Self.error(.badRequest, code: 100, "Invalid parameter")
            }
            switch to {
            case "window-closed" where body["type"] != "template": return Self.error(.badRequest, code: 131047, "Re-engagement message")
            case "rate-limited": return Self.error(.tooManyRequests, code: 130429, "Rate limit hit")
            case "unreachable-number": return Self.error(.badRequest, code: 131026, "Message Undeliverable")
            default: break
            }
            let n = self.sent.withLock { $0.append(body); return $0.count }
            let answer: Value = ["messaging_product": "whatsapp", "contacts": [["input": .string(to), "wa_id": .string(to)]],
                                 "messages": [["id": .string("wamid.fake.\(n)")]]]
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: answer.jsonText)))
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static func error(_ status: HTTPResponse.Status, code: Int, _ message: String) -> Response {
        let body: Value = ["error": ["message": .string("(#\(code)) \(message)"), "type": "OAuthException", "code": .number(Double(code)),
                                     "fbtrace_id": "AbCdEf"]]
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body.jsonText)))
    }

    var messages: [Value] { sent.withLock { $0 } }
}
