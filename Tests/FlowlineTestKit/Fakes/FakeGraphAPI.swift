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
/// a template), `15550130429` → 130429 (with HTTP 400, as Meta's table lists), `15550131026` → 131026. Interactive
/// messages are held to WhatsApp's limits (131009 otherwise): reply buttons 1–3 with unique ids (≤ 256) and titles
/// of ≤ 20 characters, a body of ≤ 1,024; lists with a button label of ≤ 20, 1–10 sections and at most 10 rows in
/// all, unique row ids (≤ 200), titles of ≤ 24, descriptions of ≤ 72, a section title when there are several, and
/// a body of ≤ 4,096. `mode` makes it answer 500 or hang. Read receipts (`status: read`) answer
/// `{"success": true}` and are kept apart, in `reads`.
public final class FakeGraphAPI: Sendable {
    public let token: String
    /// The business number this token sends from; a request for another number is refused as the Graph does.
    public let phoneNumberID: String
    public let sent = Mutex<[Value]>([])
    public let reads = Mutex<[String]>([])
    /// `failing` answers every send with a 500 (Graph code 131000), `hanging` holds every request until the mode changes.
    public enum Mode: Sendable { case normal, failing, hanging }
    public let mode = Mutex(Mode.normal)
    /// Read receipts answer 500 while set; messages go through.
    public let readsFailing = Mutex(false)
    /// Requests answered (or held) by a failing or hanging mode.
    public let refused = Mutex(0)

    public static let windowClosed = "15550131047", rateLimited = "15550130429", unreachable = "15550131026"

    public init(token: String, phoneNumberID: String = "106540352242922") {
        self.token = token
        self.phoneNumberID = phoneNumberID
    }

    public var app: some ApplicationProtocol {
        let router = Router()
        router.post("{version}/{phone}/messages") { request, context -> Response in
            switch self.mode.withLock({ $0 }) {
            case .normal: break
            case .failing:
                self.refused.withLock { $0 += 1 }
                return Self.error(.internalServerError, code: 131000, "Something went wrong")
            case .hanging:
                self.refused.withLock { $0 += 1 }
                // Held until the mode changes (or two minutes pass), so a test can end without waiting it out.
                let until = ContinuousClock.now + .seconds(120)
                while self.mode.withLock({ $0 }) == .hanging, ContinuousClock.now < until { try await Task.sleep(for: .milliseconds(50)) }
                return Self.error(.internalServerError, code: 131000, "Something went wrong")
            }
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
            if body["messaging_product"] == "whatsapp", body["status"] == "read", self.readsFailing.withLock({ $0 }) {
                return Self.error(.internalServerError, code: 131000, "Something went wrong")
            }
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
            if body["biz_opaque_callback_data"] != .null, !(1...512).contains(body["biz_opaque_callback_data"].nonEmptyText?.count ?? 0) {
                return Self.error(.badRequest, code: 100, "Invalid parameter")
            }
            guard let who = to ?? userID else { return Self.error(.badRequest, code: 100, "Invalid parameter") }
            switch body["type"].text {
            case "text":
                guard case .string(let text) = body["text"]["body"], !text.isEmpty, text.count <= 4096 else {
                    return Self.error(.badRequest, code: 100, "Invalid parameter")
                }
            case "interactive":
                if let problem = Self.interactiveProblem(body["interactive"]) { return Self.error(.badRequest, code: 131009, problem) }
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
            // Meta's error table lists 130429 with HTTP 400: only the code tells a rate limit apart.
            case Self.rateLimited?: return Self.error(.badRequest, code: 130429, "Rate limit hit")
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

    /// Why WhatsApp would refuse this `interactive` object, or nil.
    public static func interactiveProblem(_ interactive: Value) -> String? {
        func length(_ v: Value) -> Int? { if case .string(let s) = v { s.count } else { nil } }
        let body = length(interactive["body"]["text"]) ?? 0
        switch interactive["type"].text {
        case "button":
            guard case .list(let buttons) = interactive["action"]["buttons"], (1...3).contains(buttons.count) else { return "buttons: 1 to 3" }
            guard (1...1024).contains(body) else { return "body.text: 1 to 1024 characters" }
            let ids = buttons.map { $0["reply"]["id"].text }
            guard buttons.allSatisfy({ $0["type"] == "reply" && (1...20).contains(length($0["reply"]["title"]) ?? 0) }) else {
                return "button title: 1 to 20 characters"
            }
            guard ids.allSatisfy({ (1...256).contains($0.count) }), Set(ids).count == ids.count else { return "button ids: unique, 1 to 256 characters" }
        case "list":
            guard (1...4096).contains(body) else { return "body.text: 1 to 4096 characters" }
            guard (1...20).contains(length(interactive["action"]["button"]) ?? 0) else { return "action.button: 1 to 20 characters" }
            guard case .list(let sections) = interactive["action"]["sections"], (1...10).contains(sections.count) else { return "sections: 1 to 10" }
            var ids: [String] = []
            for section in sections {
                if sections.count > 1, !(1...24).contains(length(section["title"]) ?? 0) { return "section title: 1 to 24 characters" }
                guard case .list(let rows) = section["rows"], !rows.isEmpty else { return "rows: at least one per section" }
                for row in rows {
                    guard (1...24).contains(length(row["title"]) ?? 0) else { return "row title: 1 to 24 characters" }
                    if row["description"] != .null, !(0...72).contains(length(row["description"]) ?? 73) { return "row description: up to 72 characters" }
                    ids.append(row["id"].text)
                }
            }
            guard ids.count <= 10 else { return "rows: at most 10 in all" }
            guard ids.allSatisfy({ (1...200).contains($0.count) }), Set(ids).count == ids.count else { return "row ids: unique, 1 to 200 characters" }
        default:
            return "interactive.type"
        }
        return nil
    }

    public static func error(_ status: HTTPResponse.Status, code: Int, _ message: String) -> Response {
        let body: Value = ["error": ["message": .string("(#\(code)) \(message)"), "type": "OAuthException", "code": .number(Double(code)),
                                     "fbtrace_id": "AbCdEf"]]
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body.jsonText)))
    }

    public var messages: [Value] { sent.withLock { $0 } }

    public static func isPhone(_ s: String) -> Bool {
        let digits = s.hasPrefix("+") ? s.dropFirst() : Substring(s)
        return (5...20).contains(digits.count) && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// Country code, a period, then letters and digits (`US.13491208655302741918`, a parent `US.ENT.…`).
    public static func isUserID(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts[0].count == 2 && parts[0].allSatisfy { $0.isASCII && $0.isUppercase }
            && parts.dropFirst().allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }
    }
}
