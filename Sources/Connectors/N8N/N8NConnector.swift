import AsyncHTTPClient
import FlowEngine
import FlowVM
import Foundation
import NIOCore

/// `n8n.trigger`: starts an n8n workflow through its Webhook node, `POST {base}/webhook/<path>` (production: the
/// workflow must be active) or `{base}/webhook-test/<path>` (test: only while the editor listens).
///
/// The JSON body is the flow's `data` with `conversation` and, when the server makes resume links, `resume_url`.
/// With `wait: response` (the default) the result is what the workflow answered (its last node, or a "Respond to
/// Webhook" node). With `wait: callback` the result is `{status, resume_token, resume_url}` at once, and the flow
/// waits for the workflow to POST to `resume_url` (`wait_for: { event: resume, match: job.resume_token }`).
///
/// Failures: an unregistered path (404: inactive workflow, or the test URL not listening) and refused credentials
/// (401, 403) are permanent; 429, 5xx, timeouts and refused connections are retried.
public struct N8NConnector: Connector {
    public enum Auth: Sendable {
        case none
        case header(name: String, value: String)
        case basic(user: String, password: String)
    }

    public let baseURL: String
    private let auth: Auth

    public init(baseURL: String, auth: Auth = .none) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.auth = auth
    }

    public var definitions: [ActionDefinition] { Self.actions }


    public func perform(action: String, parameters p: Value, context: ConnectorContext) async throws -> Value {
        let path = p["webhook"].text.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard !path.isEmpty, !path.contains(".."), path.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "?" && $0 != "#" }) else {
            throw ConnectorError(code: "n8n_path", message: "webhook must be the Webhook node's path", retryable: false)
        }
        let callback = p["wait"] == "callback"
        if callback && context.resume == nil {
            throw ConnectorError(code: "n8n_no_resume", message: "wait: callback needs resume links, which need FLOWLINE_SECRET_KEY", retryable: false)
        }
        var body: [String: Value] = [:]
        if case .map(let data) = p["data"] { body = data }
        body["conversation"] = .string(context.conversation)
        if let resume = context.resume { body["resume_url"] = .string(resume.url) }

        let prefix = p["mode"] == "test" ? "webhook-test" : "webhook"
        var request = HTTPClientRequest(url: "\(baseURL)/\(prefix)/\(path)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: context.idempotencyKey)
        switch auth {
        case .none: break
        case .header(let name, let value): request.headers.add(name: name, value: value)
        case .basic(let user, let password):
            request.headers.add(name: "Authorization", value: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        }
        request.body = .bytes(ByteBuffer(string: Value.map(body).jsonText))
        let (response, bytes) = try await context.send(request, to: "n8n", limit: 4 << 20)
        let status = Int(response.status.code)
        let text = String(buffer: bytes)
        switch status {
        case 200..<300:
            let answer = Value(json: text) ?? (text.isEmpty ? .null : .string(text))
            guard callback, let resume = context.resume else { return answer }
            return ["status": "started", "resume_token": .string(resume.token), "resume_url": .string(resume.url), "response": answer]
        case 404:
            throw ConnectorError(code: "n8n_not_registered",
                                 message: "n8n has no webhook \(path) (\(prefix)): activate the workflow, or press \"listen\" for a test URL",
                                 retryable: false)
        case 401, 403:
            throw ConnectorError(code: "n8n_auth", message: "n8n refused the credentials (\(status))", retryable: false)
        case 408, 425, 429, 500...:
            throw ConnectorError(code: "n8n_\(status)", message: "n8n answered \(status)", retryable: true,
                                 retryAfter: HTTPWebhookConnector.retryAfter(response.headers.first(name: "Retry-After"), now: Date()))
        default:
            throw ConnectorError(code: "n8n_\(status)", message: "n8n answered \(status)", retryable: false)
        }
    }
}

extension N8NConnector {
    /// The actions it performs, with their JSON Schemas.
    public static let actions: [ActionDefinition] = [
        ActionDefinition(
            name: "n8n.trigger",
            summary: "Start an n8n workflow through its Webhook node",
            parameters: ActionSchema.object([
                "webhook": ["type": "string", "minLength": 1, "description": "the Webhook node's path"],
                "mode": ["type": "string", "enum": ["production", "test"]],
                "data": ActionSchema.anyObject,
                "wait": ["type": "string", "enum": ["response", "callback"]],
            ], required: ["webhook"]),
            result: [:]
        ),
    ]
}

/// The `n8n` channel kind: an n8n instance whose Webhook nodes `n8n.trigger` calls.
public struct N8NChannel: ChannelDriver {
    public init() {}

    public let kind = "n8n"
    public let summary = "An n8n instance, to start its workflows"
    public let fields = [
        ChannelField("base_url", .url, required: true, summary: "where n8n is (its webhook URLs start there)"),
        ChannelField("auth", .choice(["none", "header", "basic"]), summary: "the Webhook nodes' authentication"),
        ChannelField("auth_header", .text(max: 100), summary: "the header that header auth sends (Authorization by default)"),
        ChannelField("auth_value", .secret(min: 1), summary: "the Webhook nodes' header-auth value"),
        ChannelField("username", .text(max: 256), summary: "the Webhook nodes' basic-auth user"),
        ChannelField("password", .secret(min: 1), summary: "the Webhook nodes' basic-auth password"),
    ]
    public var actions: [ActionDefinition] { N8NConnector.actions }

    public func perform(action: String, parameters: Value, account: ChannelAccount, context: ConnectorContext,
                        store: any ChannelStore) async throws -> Value {
        let config = account.config, credentials = account.credentials
        let auth: N8NConnector.Auth = switch config["auth"].nonEmptyText {
        case "header": .header(name: config["auth_header"].nonEmptyText ?? "Authorization", value: credentials["auth_value"].text)
        case "basic": .basic(user: config["username"].text, password: credentials["password"].text)
        default: .none
        }
        return try await N8NConnector(baseURL: config["base_url"].text, auth: auth).perform(action: action, parameters: parameters, context: context)
    }
}
