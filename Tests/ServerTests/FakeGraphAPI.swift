import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// A small, faithful WhatsApp Cloud API on 127.0.0.1, written from Meta's documented contract for
/// `POST /{version}/{phone_number_id}/messages`: a bearer token, the business number the token may send from,
/// `messaging_product: whatsapp`, a recipient (`to`: a phone number, digits with an optional `+`; `recipient`: a
/// business-scoped user id; one or both), and a `text` or `interactive` body within the documented limits. It
/// answers `{messaging_product, contacts, messages: [{id}]}`, or a Graph error (`{"error": {"code", "message",
/// "type"}}`), 100 for a malformed request, and for scripted phone numbers: `15550131047` → 131047 (for anything but
/// a template), `15550130429` → 130429, `15550131026` → 131026. Read receipts (`status: read`) answer
/// `{"success": true}` and are kept apart, in `reads`.
final class FakeGraphAPI: Sendable {
    let token: String
    /// The business number this token sends from; a request for another number is refused as the Graph does.
    let phoneNumberID: String
    let sent = Mutex<[Value]>([])
    let reads = Mutex<[String]>([])

    static let windowClosed = "15550131047", rateLimited = "15550130429", unreachable = "15550131026"

    init(token: String, phoneNumberID: String = "106540352242922") {
        self.token = token
        self.phoneNumberID = phoneNumberID
    }

    var app: some ApplicationProtocol {
        let router = Router()
        router.post("{version}/{phone}/messages") { request, context -> Response in
            guard request.headers[.authorization] == "Bearer \(self.token)" else {
                return Self.error(.unauthorized, code: 190, "Invalid OAuth access token.")
            }
            guard context.parameters.get("phone") == self.phoneNumberID else {
                return Self.error(.badRequest, code: 100, "Unsupported post request. Object with ID does not exist")
            }
            guard request.headers[.contentType]?.hasPrefix("application/json") == true else {
                return Self.error(.badRequest, code: 100, "Invalid parameter")
            }
            let body = Value(json: String(buffer: try await request.body.collect(upTo: 1 << 20))) ?? .null
            if body["messaging_product"] == "whatsapp", body["status"] == "read" {
                guard case .string(let id) = body["message_id"], id.hasPrefix("wamid.") else { return Self.error(.badRequest, code: 100, "Invalid parameter") }
                self.reads.withLock { $0.append(id) }
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"success": true}"#)))
            }
            // `to` takes phone numbers only; a business-scoped user id goes in `recipient`.
            let to = body["to"].nonEmptyText, userID = body["recipient"].nonEmptyText
            guard body["messaging_product"] == "whatsapp", to != nil || userID != nil,
                  to.map(Self.isPhone) ?? true, userID.map(Self.isUserID) ?? true, body["to"] == .null || to != nil else {
                return Self.error(.badRequest, code: 100, "Invalid parameter")
            }
            let who = to ?? userID!
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
            case Self.windowClosed? where body["type"] != "template": return Self.error(.badRequest, code: 131047, "Re-engagement message")
            case Self.rateLimited?: return Self.error(.tooManyRequests, code: 130429, "Rate limit hit")
            case Self.unreachable?: return Self.error(.badRequest, code: 131026, "Message Undeliverable")
            default: break
            }
            let n = self.sent.withLock { $0.append(body); return $0.count }
            let answer: Value = ["messaging_product": "whatsapp", "contacts": [["input": .string(who), "wa_id": .string(to ?? "")]],
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

    static func isPhone(_ s: String) -> Bool {
        let digits = s.hasPrefix("+") ? s.dropFirst() : Substring(s)
        return (5...20).contains(digits.count) && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// Country code, a period, then letters and digits (`US.13491208655302741918`, a parent `US.ENT.…`).
    static func isUserID(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts[0].count == 2 && parts[0].allSatisfy { $0.isASCII && $0.isUppercase }
            && parts.dropFirst().allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }
    }
}
