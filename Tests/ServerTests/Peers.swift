import AsyncHTTPClient
import FlowVM
import Foundation
import NIOCore
import FlowlineTestKit
import Testing

/// Helpers for tests that talk to the protocol peers `scripts/test.sh` starts on loopback (localstripe, aiosmtpd,
/// fakellm); `Peer.value` (FlowlineTestKit) finds them, skipping the test outside the script and failing it under it.
enum Peers {
    /// Polls `check` until it answers, or fails the test after `seconds` (`FlowlineTestKit.eventually`).
    static func eventually<T>(_ what: String, seconds: Double = 10, _ check: () async throws -> T?) async throws -> T {
        try await FlowlineTestKit.eventually(what, seconds: seconds, check)
    }

    /// Form-encoded POSTs with a bearer key, as Stripe (and localstripe) take them.
    struct Form {
        let base: String
        let key: String

        @discardableResult
        func post(_ path: String, _ fields: [(String, String)]) async throws -> Value {
            var request = HTTPClientRequest(url: base + path)
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(key)")
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            let allowed = CharacterSet.alphanumerics.union(.init(charactersIn: "-._~"))
            request.body = .bytes(ByteBuffer(string: fields.map {
                ($0.0.addingPercentEncoding(withAllowedCharacters: allowed) ?? "") + "=" + ($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
            }.joined(separator: "&")))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
            guard (200..<300).contains(Int(response.status.code)) else {
                Issue.record("POST \(path) answered \(response.status.code): \(body.prefix(300))")
                throw CancellationError()
            }
            return Value(json: body) ?? .null
        }
    }
}
