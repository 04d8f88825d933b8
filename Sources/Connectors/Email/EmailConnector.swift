import Crypto
import FlowEngine
import FlowVM
import Foundation

/// `email.send` over SMTP (`SMTPClient`) from the email channel's account.
///
/// The message is RFC 5322: `Date`, `From`, `To`, `Subject` (UTF-8 as RFC 2047 encoded words), `Message-ID`
/// (derived from the outbox key, so a retried send carries the same id and receivers can drop the copy), and a
/// quoted-printable text part, HTML part, or both as `multipart/alternative`.
public struct EmailConnector: Connector {
    public let smtp: SMTPClient
    public let from: String

    public init(smtp: SMTPClient, from: String) {
        self.smtp = smtp
        self.from = from
    }

    public var definitions: [ActionDefinition] { Self.actions }


    public func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        let recipients = parameters["to"].text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !recipients.isEmpty, recipients.allSatisfy(Self.isAddress), Self.isAddress(Self.address(from)) else {
            throw ConnectorError(code: "email_address", message: "the recipient or sender is not an email address", retryable: false)
        }
        if let replyTo = parameters["reply_to"].nonEmptyText, !Self.isAddress(replyTo) {
            throw ConnectorError(code: "email_address", message: "reply_to is not an email address", retryable: false)
        }
        let text = parameters["text"].nonEmptyText, html = parameters["html"].nonEmptyText
        guard text != nil || html != nil else {
            throw ConnectorError(code: "email_body", message: "an email needs text or html", retryable: false)
        }
        let messageID = Self.messageID(key: context.idempotencyKey, from: from)
        let data = Self.render(from: from, to: recipients, subject: parameters["subject"].text, text: text, html: html,
                               replyTo: parameters["reply_to"].nonEmptyText, messageID: messageID, date: Date())
        try await smtp.send(from: Self.address(from), to: recipients, data: data, deadline: context.deadline)
        return ["id": .string(messageID)]
    }

    /// `Name <a@b>` → `a@b`.
    static func address(_ mailbox: String) -> String {
        if let open = mailbox.lastIndex(of: "<"), let close = mailbox.lastIndex(of: ">"), open < close {
            return String(mailbox[mailbox.index(after: open)..<close])
        }
        return mailbox.trimmingCharacters(in: .whitespaces)
    }

    /// A plain address: something@domain, no spaces, no angle brackets or line breaks that could inject commands.
    static func isAddress(_ s: String) -> Bool {
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[1].contains(".") && s.count <= 320
            && !s.unicodeScalars.contains { $0.value <= 0x20 || "<>,;\"\\".unicodeScalars.contains($0) }
    }

    /// `<hex of SHA-256(key)…@sender's domain>`: the same for every attempt at one send.
    public static func messageID(key: String, from: String) -> String {
        let digest = SHA256.hash(data: Data(key.utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
        let domain = address(from).split(separator: "@").last.map(String.init) ?? "flowline.localhost"
        return "<\(digest)@\(domain)>"
    }

    /// The message as sent in DATA (before dot-stuffing), lines ending in CRLF.
    public static func render(from: String, to: [String], subject: String, text: String?, html: String?, replyTo: String?,
                              messageID: String, date: Date) -> String {
        var headers = [
            "Date: " + rfc5322Date(date),
            "From: " + from,
            "To: " + to.joined(separator: ", "),
            "Subject: " + encodedWords(subject),
            "Message-ID: " + messageID,
            "MIME-Version: 1.0",
        ]
        if let replyTo { headers.append("Reply-To: " + replyTo) }
        func part(_ body: String, _ type: String) -> [String] {
            ["Content-Type: text/\(type); charset=UTF-8", "Content-Transfer-Encoding: quoted-printable", "", quotedPrintable(body)]
        }
        var lines = headers
        switch (text, html) {
        case (let text?, let html?):
            let boundary = "flowline-" + messageID.filter { $0.isLetter || $0.isNumber }.prefix(24)
            lines += ["Content-Type: multipart/alternative; boundary=\"\(boundary)\"", "", "--" + boundary] + part(text, "plain")
                + ["--" + boundary] + part(html, "html") + ["--\(boundary)--"]
        case (let text?, nil): lines += part(text, "plain")
        case (nil, let html?): lines += part(html, "html")
        case (nil, nil): lines += ["", ""]
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func rfc5322Date(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return f.string(from: date)
    }

    /// ASCII text as is; anything else as RFC 2047 `=?UTF-8?B?…?=` words of at most 75 characters, folded onto
    /// continuation lines, never splitting a character between words.
    public static func encodedWords(_ text: String) -> String {
        let safe = text.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7f }
        if safe && text.count <= 900 { return text }
        var words: [String] = []
        var chunk: [UInt8] = []
        for character in text where !character.isNewline {
            let bytes = Array(String(character).utf8)
            if chunk.count + bytes.count > 45 {  // 45 bytes → 60 base64 characters + 12 of markers
                words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=") }
        return words.joined(separator: "\r\n ")
    }

    /// RFC 2045 quoted-printable: lines of at most 76 characters, soft breaks with `=`, CRLF line ends.
    public static func quotedPrintable(_ text: String) -> String {
        var out: [String] = []
        for line in text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false) {
            var encoded = ""
            var current = ""
            let bytes = Array(line.utf8)
            for (i, b) in bytes.enumerated() {
                let last = i == bytes.count - 1
                // Printable ASCII but `=` stays as is; so do spaces and tabs, except at a line's end.
                let literal = (b >= 33 && b <= 126 && b != 61) || ((b == 32 || b == 9) && !last)
                let piece = literal ? String(UnicodeScalar(b)) : String(format: "=%02X", b)
                if current.count + piece.count > 75 {
                    encoded += current + "=\r\n"
                    current = ""
                }
                current += piece
            }
            out.append(encoded + current)
        }
        return out.joined(separator: "\r\n")
    }
}

extension EmailConnector {
    /// The actions it performs, with their JSON Schemas.
    public static let actions: [ActionDefinition] = [
        ActionDefinition(
            name: "email.send",
            summary: "Send an email over SMTP",
            parameters: ActionSchema.object([
                "to": ActionSchema.nonEmpty,
                "subject": ActionSchema.nonEmpty,
                "text": ActionSchema.string,
                "html": ActionSchema.string,
                "reply_to": ActionSchema.string,
            ], required: ["to", "subject"]),
            result: ActionSchema.object(["id": ActionSchema.string])
        ),
    ]
}

/// The `email` channel kind: an SMTP account that `email.send` sends from.
public struct EmailChannel: ChannelDriver {
    public init() {}

    public let kind = "email"
    public let summary = "An SMTP account, to send email"
    public let fields = [
        ChannelField("host", .host, required: true, summary: "the SMTP server"),
        ChannelField("port", .port, summary: "587 for STARTTLS, 465 for TLS, 25 for none, by default"),
        ChannelField("security", .choice(["starttls", "tls", "none"]), summary: "how the connection is protected (starttls by default)"),
        ChannelField("from", .text(max: 320), required: true, summary: "the sender, `Name <address>` or an address"),
        ChannelField("username", .text(max: 256), summary: "the SMTP AUTH user"),
        ChannelField("password", .secret(min: 1), summary: "the SMTP AUTH password"),
        ChannelField("ca_certificate", .pem, summary: "a private CA's certificate, for a server whose certificate it signed"),
    ]
    public var actions: [ActionDefinition] { EmailConnector.actions }

    public func perform(action: String, parameters: Value, account: ChannelAccount, context: ConnectorContext,
                        store: any ChannelStore) async throws -> Value {
        let config = account.config
        let security = SMTPClient.Security(rawValue: config["security"].nonEmptyText ?? "starttls") ?? .starttls
        let port: Int? = if case .number(let n) = config["port"] { Int(n) } else { nil }
        return try await EmailConnector(smtp: SMTPClient(.init(
            host: config["host"].text, port: port, security: security, username: config["username"].nonEmptyText,
            password: account.credentials["password"].nonEmptyText, trustedCertificatePEM: config["ca_certificate"].nonEmptyText)),
            from: config["from"].text).perform(action: action, parameters: parameters, context: context)
    }
}
