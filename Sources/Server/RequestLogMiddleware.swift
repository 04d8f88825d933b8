import Hummingbird
import Logging

/// One log line per request, with its id, method, path and status, and never a secret: queries are dropped (a
/// WhatsApp `hub.verify_token`, anything a caller puts there) and the token of a resume link is masked, so a log
/// shipped to a third party hands out nothing that opens a conversation.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = FlowlineRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        var metadata: Logger.Metadata = [
            "hb.request.method": "\(request.method.rawValue)",
            "hb.request.path": "\(Self.redacted(request.uri.path))",
        ]
        if request.uri.query != nil { metadata["hb.request.query"] = "redacted" }
        var status = 500
        defer {
            metadata["hb.response.status"] = "\(status)"
            metadata["duration_ms"] = "\((ContinuousClock.now - started).milliseconds)"
            context.logger.info("request", metadata: metadata)
        }
        do {
            let response = try await next(request, context)
            status = response.status.code
            return response
        } catch {
            status = (error as? HTTPResponseError)?.status.code ?? 500
            throw error
        }
    }

    /// The path with its secret segments masked: `/webhooks/resume/<token>`.
    static func redacted(_ path: String) -> String {
        let secretAfter = "/webhooks/resume/"
        if path.hasPrefix(secretAfter) { return secretAfter + "***" }
        return path
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
