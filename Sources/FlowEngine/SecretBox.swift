import Crypto
import FlowVM
import Foundation

/// Encrypts connector and channel secrets at rest with AES-256-GCM under one key from the environment
/// (`FLOWLINE_SECRET_KEY`, 32 bytes in base64). Each sealed value is bound to the row it belongs to (the
/// associated data, e.g. tenant and channel id), so a ciphertext copied into another row does not open.
///
/// The stored text is `v1:` followed by base64 of nonce ‖ ciphertext ‖ tag; the prefix leaves room for key rotation.
public struct SecretBox: Sendable {
    // Raw bytes: `SymmetricKey` is not `Sendable` on every platform.
    private let keyBytes: [UInt8]
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public init(key: SymmetricKey) {
        keyBytes = key.withUnsafeBytes { Array($0) }
    }

    /// A box from a base64 key of 32 bytes; throws an error that does not echo the key.
    public init(base64 text: String) throws {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), data.count == 32 else {
            throw EngineError(.secret, "the secret key must be 32 bytes in base64 (generate one with: openssl rand -base64 32)")
        }
        keyBytes = Array(data)
    }

    /// A key for another purpose (signing resume links...), derived with HKDF so the sealing key is never reused.
    public func derivedKey(purpose: String) -> [UInt8] {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Data(purpose.utf8), outputByteCount: 32).withUnsafeBytes { Array($0) }
    }

    /// A fresh random key in base64, for a new installation.
    public static func generateKey() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }

    /// Compares two secrets (digests, signatures, tokens) in time that depends only on their length, so a
    /// forger learns nothing from how long a refusal takes.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// Seals `secret` for the row named by `context`.
    public func seal(_ secret: String, context: String) throws -> String {
        let box = try AES.GCM.seal(Data(secret.utf8), using: key, authenticating: Data(context.utf8))
        guard let combined = box.combined else { throw EngineError(.secret, "could not seal the secret") }
        return "v1:" + combined.base64EncodedString()
    }

    /// Opens a value sealed for `context`; fails on another key, another row or a tampered value.
    public func open(_ sealed: String, context: String) throws -> String {
        guard sealed.hasPrefix("v1:"), let data = Data(base64Encoded: String(sealed.dropFirst(3))) else {
            throw EngineError(.secret, "a stored secret is not in a known format")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            return String(decoding: try AES.GCM.open(box, using: key, authenticating: Data(context.utf8)), as: UTF8.self)
        } catch {
            throw EngineError(.secret, "a stored secret cannot be decrypted with this key (was FLOWLINE_SECRET_KEY changed?)")
        }
    }
}

/// An outbox payload sealed at rest, for a send that carries a secret (an invitation's link): `{"$sealed": "v1:…"}`
/// under the server's key, bound to the row's idempotency key, and opened only as it is delivered.
public enum SealedPayload {
    static let marker = "$sealed"

    public static func seal(_ payload: Value, key: String, with box: SecretBox) throws -> Value {
        .map([marker: .string(try box.seal(payload.jsonText, context: "outbox:" + key))])
    }

    /// The payload to deliver: itself when not sealed; opened when sealed (failing without the key that sealed it).
    static func open(_ payload: Value, key: String, with box: SecretBox?) throws -> Value {
        guard case .map(let m) = payload, m.count == 1, case .string(let sealed)? = m[marker] else { return payload }
        guard let box, let opened = Value(json: try box.open(sealed, context: "outbox:" + key)) else {
            throw EngineError(.secret, "a sealed payload cannot be opened with this server's key")
        }
        return opened
    }
}
