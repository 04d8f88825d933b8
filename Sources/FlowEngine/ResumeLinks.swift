import Crypto
import Foundation

/// Makes resume links. A token is an HMAC of the tenant, conversation and effect key under a key derived from the
/// server's secret key: the same for every retry of one effect (so a retried call sends the same URL), and
/// impossible to guess. It is single-use because the conversation leaves its wait when the first POST arrives.
public struct ResumeLinks: Sendable {
    public let baseURL: String
    private let keyBytes: [UInt8]

    public init(baseURL: String, secrets: SecretBox) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        keyBytes = secrets.derivedKey(purpose: "flowline resume links v1")
    }

    public func link(tenant: String, conversation: String, effectKey: String) -> ResumeLink {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(tenant)\n\(conversation)\n\(effectKey)".utf8), using: SymmetricKey(data: keyBytes))
        let token = conversation + "." + mac.map { String(format: "%02x", $0) }.joined()
        return ResumeLink(token: token, url: "\(baseURL)/webhooks/resume/\(token)")
    }

    /// The conversation a token names, when it has the shape of one; only the waiting conversation proves it real.
    public static func conversation(in token: String) -> String? {
        let parts = token.split(separator: ".")
        guard parts.count == 2, parts[1].count == 64, parts[1].allSatisfy(\.isHexDigit), (1...128).contains(parts[0].count),
              parts[0].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
        return String(parts[0])
    }
}
