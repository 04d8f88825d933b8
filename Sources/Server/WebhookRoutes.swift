import FlowEngine
import FlowRuntime
import FlowVM
import Hummingbird
import Logging

/// `/webhooks/...`: what providers post to. No API key: each request proves itself with the channel's secret
/// (WhatsApp's `X-Hub-Signature-256`, Stripe's `Stripe-Signature`), checked by the kind's driver on the raw bytes.
struct WebhookRoutes {
    let engine: Engine
    let channels: Channels

    func addRoutes(to router: Router<FlowlineRequestContext>) {
        router.post("webhooks/resume/{token}", use: resume)
        router.get("webhooks/{kind}/{id}", use: receive)
        router.post("webhooks/{kind}/{id}", use: receive)
    }

    /// A resume link (`ResumeLinks`): the posted JSON (or null for an empty body) resumes the one conversation
    /// waiting on this token, once. 404 once used, timed out or never valid, so a caller knows to stop retrying.
    @Sendable func resume(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let token = try context.parameters.require("token")
        let bytes = try await request.body.collect(upTo: context.maxUploadSize)
        var payload: Value = .null
        if bytes.readableBytes > 0 {
            guard let v = Value(json: String(buffer: bytes)) else { throw Problem(.badRequest, "the body must be JSON") }
            payload = v
        }
        guard let id = ResumeLinks.conversation(in: token), try await engine.resume(token: token, payload: payload) else {
            throw Problem(.notFound, "no such resume link: it was used already, has expired, or never existed")
        }
        context.logger.info("conversation resumed by link", metadata: ["conversation": "\(id)"])
        return json(["resumed": true, "conversation": .string(id)], status: .accepted)
    }

    /// A provider's webhook, handed as it arrived to the driver of the channel's kind, which checks its signature on
    /// the raw bytes before anything is parsed. 404 for a channel that does not exist or is of another kind.
    @Sendable func receive(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let kind = try context.parameters.require("kind"), id = try context.parameters.require("id")
        let body = request.method == .get ? [] : Array(buffer: try await request.body.collect(upTo: context.maxUploadSize))
        var query: [String: String] = [:]
        for (name, value) in request.uri.queryParameters where query[String(name)] == nil { query[String(name)] = String(value) }
        var headers: [String: String] = [:]
        for field in request.headers where headers[field.name.canonicalName] == nil { headers[field.name.canonicalName] = field.value }
        let answer: WebhookResponse
        do {
            answer = try await channels.webhook(kind: kind, id: id, WebhookRequest(method: request.method.rawValue, query: query, headers: headers, body: body),
                                                engine: engine, logger: context.logger)
        } catch is Channels.NoSuchChannel {
            throw Problem(.notFound, "no \(kind) channel \(id)")
        } catch let refusal as WebhookRefusal {
            throw Problem(Problem.Kind(status: refusal.status), refusal.message, allow: refusal.allow)
        }
        return Response(status: HTTPResponse.Status(code: answer.status), headers: [.contentType: answer.contentType],
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }
}
