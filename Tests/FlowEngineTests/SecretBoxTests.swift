import Crypto
@testable import FlowEngine
import FlowVM
import Foundation
import Testing

@Suite struct SecretBoxTests {
    let box = SecretBox(key: SymmetricKey(size: .bits256))

    @Test func sealsAndOpensForTheSameRow() throws {
        let sealed = try box.seal("sk_live_123", context: "channel:a:ch_1")
        #expect(sealed.hasPrefix("v1:"))
        #expect(!sealed.contains("sk_live_123"))
        #expect(try box.open(sealed, context: "channel:a:ch_1") == "sk_live_123")
        #expect(try box.seal("sk_live_123", context: "channel:a:ch_1") != sealed, "a fresh nonce each time")
    }

    @Test func refusesAnotherRowAnotherKeyOrATamperedValue() throws {
        let sealed = try box.seal("secret", context: "channel:a:ch_1")
        #expect(throws: EngineError.self) { try box.open(sealed, context: "channel:b:ch_1") }
        #expect(throws: EngineError.self) { try SecretBox(key: SymmetricKey(size: .bits256)).open(sealed, context: "channel:a:ch_1") }
        var bytes = Array(Data(base64Encoded: String(sealed.dropFirst(3)))!)
        bytes[bytes.count / 2] ^= 1
        #expect(throws: EngineError.self) { try box.open("v1:" + Data(bytes).base64EncodedString(), context: "channel:a:ch_1") }
        #expect(throws: EngineError.self) { try box.open("plain", context: "channel:a:ch_1") }
    }

    @Test func keysComeAsThirtyTwoBytesOfBase64AndErrorsDoNotEchoThem() throws {
        let key = SecretBox.generateKey()
        let a = try SecretBox(base64: key), b = try SecretBox(base64: key + "\n")
        #expect(try b.open(a.seal("x", context: "c"), context: "c") == "x")
        let short = Data(repeating: 7, count: 16).base64EncodedString()
        do {
            _ = try SecretBox(base64: short)
            Issue.record("a 16-byte key was accepted")
        } catch let e as EngineError {
            #expect(e.code == .secret)
            #expect(!e.description.contains(short))
        }
    }

    @Test func aSealedPayloadOpensOnlyForItsRowUnderItsKey() throws {
        let payload: Value = ["to": "bia@a.example", "text": "https://flows.example/invitation#t0ken"]
        let sealed = try SealedPayload.seal(payload, key: "invite:1", with: box)
        #expect(!sealed.jsonText.contains("t0ken") && !sealed.jsonText.contains("bia@"))
        #expect(try SealedPayload.open(sealed, key: "invite:1", with: box) == payload)
        #expect(throws: EngineError.self) { try SealedPayload.open(sealed, key: "invite:2", with: box) }
        #expect(throws: EngineError.self) { try SealedPayload.open(sealed, key: "invite:1", with: nil) }
        #expect(try SealedPayload.open(payload, key: "invite:1", with: nil) == payload, "an unsealed payload is delivered as it is")
    }
}
