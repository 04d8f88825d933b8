@testable import Connectors
import Foundation
import FlowlineTestKit
import Testing

/// The message `email.send` writes: RFC 5322 headers, RFC 2047 subjects, quoted-printable bodies, dot-stuffing.
@Suite struct EmailConnectorTests {
    @Test func asciiSubjectsStayAndOthersBecomeEncodedWordsThatNeverSplitACharacter() {
        #expect(EmailConnector.encodedWords("Your receipt") == "Your receipt")
        let subject = String(repeating: "ção ", count: 20) + "😀"
        let encoded = EmailConnector.encodedWords(subject)
        let words = encoded.components(separatedBy: "\r\n ")
        #expect(words.count > 1)
        var bytes = Data()
        for w in words {
            #expect(w.hasPrefix("=?UTF-8?B?") && w.hasSuffix("?=") && w.count <= 75)
            let chunk = try! #require(Data(base64Encoded: String(w.dropFirst(10).dropLast(2))))
            #expect(String(data: chunk, encoding: .utf8) != nil, "each word is whole characters")
            bytes += chunk
        }
        #expect(String(decoding: bytes, as: UTF8.self) == subject)
        // A line break in a subject cannot inject a header.
        #expect(!EmailConnector.encodedWords("Hi\r\nBcc: x@y.z").contains("\r\nBcc"))
    }

    @Test func quotedPrintableKeepsLinesShortAndEscapesWhatItMust() {
        let qp = EmailConnector.quotedPrintable("a=b trailing \nÉ" + String(repeating: "x", count: 100))
        let lines = qp.components(separatedBy: "\r\n")
        #expect(lines[0] == "a=3Db trailing=20")
        #expect(lines.allSatisfy { $0.count <= 76 })
        #expect(lines[1].hasPrefix("=C3=89xxx") && lines[1].hasSuffix("="))
    }

    @Test func dotStuffingDoublesLeadingDotsAndUsesCRLF() {
        #expect(SMTPClient.dotStuffed("a\n.b\n..c\r\nd\n") == "a\r\n..b\r\n...c\r\nd\r\n")
        #expect(SMTPClient.dotStuffed(".") == "..\r\n")
    }

    @Test func theMessageHasItsHeadersAndAStableID() {
        let id = EmailConnector.messageID(key: "conv:3", from: "Shop <shop@example.com>")
        #expect(id == EmailConnector.messageID(key: "conv:3", from: "shop@example.com"), "a retry keeps its Message-ID")
        #expect(id != EmailConnector.messageID(key: "conv:4", from: "shop@example.com"))
        #expect(id.hasSuffix("@example.com>"))
        let data = EmailConnector.render(from: "shop@example.com", to: ["a@example.com"], subject: "Hi", text: "Body", html: nil,
                                         replyTo: "help@example.com", messageID: id, date: Date(timeIntervalSince1970: 0))
        #expect(data.hasPrefix("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nFrom: shop@example.com\r\nTo: a@example.com\r\nSubject: Hi\r\n"))
        #expect(data.contains("Reply-To: help@example.com\r\n") && data.contains("Content-Type: text/plain; charset=UTF-8\r\n"))
        #expect(data.hasSuffix("\r\n\r\nBody\r\n"))
    }

    @Test func addressesThatCouldInjectCommandsAreRefused() {
        #expect(EmailConnector.isAddress("ana@example.com"))
        for bad in ["ana", "a@b", "a b@example.com", "a@example.com>\r\nRCPT TO:<x@y.z", "<a@example.com>", "a@example.com,b@example.com"] {
            #expect(!EmailConnector.isAddress(bad), "\(bad)")
        }
    }
}
