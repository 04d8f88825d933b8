import AsyncHTTPClient
import Connectors
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import NIOCore

/// Delivers `channel.send` for `api` channels: every message is already in the conversation's history
/// (`GET /v1/conversations/{id}/messages`); when the channel has a `callback_url`, it is also POSTed there.
///
/// The request carries `Idempotency-Key` (stable across retries, so the receiver can drop repeats) and, when the
/// channel has a signing secret, `Flowline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
/// 2xx completes the delivery; 408, 425, 429 and 5xx, timeouts and refused connections are retried (honouring
/// `Retry-After`); other statuses, redirects included, are permanent failures.
struct APIChannelConnector: Connector {
    let definitions = [ActionDefinition.channelSend]
    let store: SQLStore
    let secrets: SecretBox?
    let http: HTTPClient
    var timeout: TimeAmount = .seconds(10)

    /// The signature header of a callback body signed at `time` (unix seconds): the webhook connector's scheme.
    static func signature(body: [UInt8], secret: String, time: Int64) -> String {
        HTTPWebhookConnector.signature(body: body, secret: secret, time: time)
    }

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard case .string(let channelID) = parameters["channel"],
              let channel = try await store.channel(id: channelID, tenant: context.tenant) else {
            throw ConnectorError(code: "no_channel", message: "the conversation's channel does not exist", retryable: false)
        }
        guard let url = channel.callbackURL else { return ["stored": true] }
        let body: Value = [
            "id": .string(context.idempotencyKey), "conversation": .string(context.conversation), "channel": .string(channel.id),
            "contact": parameters["contact"], "message": parameters["message"], "text": parameters["message"]["text"],
        ]
        let bytes = Array(body.jsonText.utf8)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "Flowline")
        request.headers.add(name: "Idempotency-Key", value: context.idempotencyKey)
        if let sealed = channel.sealedSecret {
            guard let secrets else {
                throw ConnectorError(code: "secret_key_missing", message: "the channel's signing secret needs FLOWLINE_SECRET_KEY", retryable: true)
            }
            let secret: String
            do { secret = try secrets.open(sealed, context: channel.secretContext) } catch {
                throw ConnectorError(code: "secret", message: "\(error)", retryable: true)
            }
            request.headers.add(name: "Flowline-Signature",
                                value: Self.signature(body: bytes, secret: secret, time: Int64(Date().timeIntervalSince1970)))
        }
        request.body = .bytes(ByteBuffer(bytes: bytes))

        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: timeout)
            _ = try? await response.body.collect(upTo: 1 << 20)  // read the answer so the connection can be reused
        } catch {
            throw ConnectorError(code: "unreachable", message: "the callback URL did not answer in time or refused the connection",
                                 retryable: true)
        }
        let status = Int(response.status.code)
        switch status {
        case 200..<300:
            return ["stored": true, "callback_status": .number(Double(status))]
        case 408, 425, 429, 500...:
            throw ConnectorError(code: "callback_\(status)", message: "the callback URL answered \(status)", retryable: true,
                                 retryAfter: Self.retryAfter(response.headers.first(name: "Retry-After"), now: Date()))
        default:
            throw ConnectorError(code: "callback_\(status)", message: "the callback URL answered \(status)", retryable: false)
        }
    }

    /// Seconds to wait from a `Retry-After` header: a number of seconds or an HTTP date (RFC 9110).
    static func retryAfter(_ header: String?, now: Date) -> Int64? {
        guard let header = header?.trimmingCharacters(in: .whitespaces), !header.isEmpty else { return nil }
        if let seconds = Int64(header) { return max(0, seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: header) else { return nil }
        return max(0, Int64(date.timeIntervalSince(now).rounded(.up)))
    }
}
