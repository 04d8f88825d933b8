import AsyncHTTPClient
import FlowEngine
import FlowVM
import Foundation
import NIOCore

/// `ai.chat` against any OpenAI-compatible chat completions API (`POST {base}/chat/completions`).
///
/// The request is: a system message (the block's `system`, its `knowledge`, the `variables` it passes), the
/// conversation's last `history` messages, then `prompt`. With `extract`, the model must answer JSON of that shape
/// (`response_format: json_schema`, strict) and the result is the map of fields. With `tools`, the named connector
/// actions are offered as functions: the calls the model makes are performed (each under its own idempotency key)
/// and their results sent back, for at most `maxToolRounds` rounds.
///
/// Failures: 429 and 5xx are retried, honouring `retry-after-ms`, then `retry-after`; `insufficient_quota` never is
/// (it will not fix itself); other 4xx are permanent. Everything ends in `on_error` when it fails for good.
public struct AIConnector: Connector {
    /// One message of the conversation, for `history`.
    public struct Turn: Sendable, Hashable {
        public var fromContact: Bool
        public var text: String
        public init(fromContact: Bool, text: String) {
            self.fromContact = fromContact
            self.text = text
        }
    }

    public let baseURL: String
    public let model: String
    private let apiKey: String?
    /// The conversation's last `n` messages, oldest first.
    private let history: @Sendable (ConnectorContext, Int) async throws -> [Turn]
    /// The actions `tools` may name, with their schemas, and how to perform one.
    private let tools: [String: ActionDefinition]
    private let performTool: @Sendable (String, Value, ConnectorContext) async throws -> Value
    public var maxToolRounds = 4

    public init(baseURL: String? = nil, apiKey: String?, model: String? = nil,
                history: @escaping @Sendable (ConnectorContext, Int) async throws -> [Turn] = { _, _ in [] },
                tools: [ActionDefinition] = [],
                performTool: @escaping @Sendable (String, Value, ConnectorContext) async throws -> Value = { _, _, _ in
                    throw ConnectorError(code: "ai_tool", message: "no tools", retryable: false)
                }) {
        let base = baseURL ?? "https://api.openai.com/v1"
        self.baseURL = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.apiKey = apiKey
        self.model = model ?? "gpt-4o-mini"
        self.history = history
        self.tools = Dictionary(tools.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.performTool = performTool
    }

    public var definitions: [ActionDefinition] { Self.actions }


    /// Function names allow `[a-zA-Z0-9_-]`: `crm.lookup` is offered as `crm__lookup`.
    static func functionName(_ action: String) -> String { action.replacingOccurrences(of: ".", with: "__") }

    public func perform(action: String, parameters p: Value, context: ConnectorContext) async throws -> Value {
        var messages: [Value] = []
        var system = p["system"].text
        if case .string(let knowledge) = p["knowledge"], !knowledge.isEmpty {
            system += (system.isEmpty ? "" : "\n\n") + "Answer from this knowledge only; say so when it does not contain the answer:\n" + knowledge
        }
        if case .map(let variables) = p["variables"], !variables.isEmpty {
            system += (system.isEmpty ? "" : "\n\n") + "What is known about this conversation (JSON): " + Value.map(variables).jsonText
        }
        if !system.isEmpty { messages.append(["role": "system", "content": .string(system)]) }
        if case .number(let n) = p["history"], n >= 1 {
            for turn in try await history(context, min(50, Int(n))) {
                messages.append(["role": turn.fromContact ? "user" : "assistant", "content": .string(turn.text)])
            }
        }
        messages.append(["role": "user", "content": .string(p["prompt"].text)])

        var body: [String: Value] = ["model": .string(p["model"].nonEmptyText ?? model)]
        if case .number = p["temperature"] { body["temperature"] = p["temperature"] }
        if case .number = p["max_tokens"] { body["max_tokens"] = p["max_tokens"] }
        var extract: [String: Value]?
        if case .map(let fields) = p["extract"], !fields.isEmpty {
            extract = fields
            body["response_format"] = Self.responseFormat(fields)
        }
        var offered: [String: String] = [:]  // function name → action
        if case .list(let names) = p["tools"] {
            var functions: [Value] = []
            for case .string(let name) in names {
                guard let d = tools[name] else {
                    throw ConnectorError(code: "ai_tool_unknown", message: "the tool \(name) is not an action this server offers", retryable: false)
                }
                offered[Self.functionName(name)] = name
                functions.append(["type": "function", "function": [
                    "name": .string(Self.functionName(name)), "description": .string(d.summary), "parameters": d.parameters,
                ]])
            }
            if !functions.isEmpty { body["tools"] = .list(functions) }
        }

        for round in 0...maxToolRounds {
            body["messages"] = .list(messages)
            let answer = try await complete(.map(body), context)
            let message = answer["choices"][0]["message"]
            guard case .list(let calls) = message["tool_calls"], !calls.isEmpty else {
                guard case .string(let content) = message["content"] else {
                    throw ConnectorError(code: "ai_response", message: "the model's answer has no text", retryable: true)
                }
                guard let extract else { return .string(content) }
                return try Self.extracted(content, fields: extract)
            }
            guard round < maxToolRounds else {
                throw ConnectorError(code: "ai_tool_rounds", message: "the model kept calling tools after \(maxToolRounds) rounds", retryable: false)
            }
            messages.append(message)
            for (i, call) in calls.enumerated() {
                let result: Value
                if let action = offered[call["function"]["name"].text] {
                    // Arguments are a JSON string the model wrote: it may not parse, and the model hears so.
                    if let arguments = Value(json: call["function"]["arguments"].text), case .map = arguments {
                        var toolContext = context
                        toolContext.idempotencyKey = "\(context.idempotencyKey):tool:\(round):\(i)"
                        do {
                            result = try await performTool(action, arguments, toolContext)
                        } catch let e as ConnectorError {
                            result = ["error": .string(e.code), "message": .string(e.message)]
                        }
                    } else {
                        result = ["error": "invalid_arguments", "message": "the arguments are not a JSON object"]
                    }
                } else {
                    result = ["error": "unknown_tool", "message": "no such tool"]
                }
                messages.append(["role": "tool", "tool_call_id": call["id"], "content": .string(result.jsonText)])
            }
        }
        throw ConnectorError(code: "ai_tool_rounds", message: "the model kept calling tools", retryable: false)
    }

    /// A strict JSON Schema response format for `extract: {name: type}`; every field may be null (not said).
    static func responseFormat(_ fields: [String: Value]) -> Value {
        var properties: [String: Value] = [:]
        for (name, type) in fields {
            let json: String = switch type.text {
            case "number", "integer": "number"
            case "bool", "boolean": "boolean"
            case "list": "array"
            default: "string"
            }
            properties[name] = json == "array" ? ["type": ["array", "null"], "items": ["type": "string"]] : ["type": [.string(json), "null"]]
        }
        return ["type": "json_schema", "json_schema": [
            "name": "extraction", "strict": true,
            "schema": ["type": "object", "properties": .map(properties), "required": .list(fields.keys.sorted().map(Value.string)),
                       "additionalProperties": false],
        ]]
    }

    /// The extracted fields, typed as asked; a field of another type, or an answer that is not JSON, is an error.
    static func extracted(_ content: String, fields: [String: Value]) throws -> Value {
        guard case .map(let answer)? = Value(json: content) else {
            throw ConnectorError(code: "ai_extract", message: "the model did not answer the JSON it was asked for", retryable: false)
        }
        var result: [String: Value] = [:]
        for (name, type) in fields {
            let v = answer[name] ?? .null
            let ok: Bool = switch (type.text, v) {
            case (_, .null): true
            case ("number", .number), ("integer", .number), ("bool", .bool), ("boolean", .bool), ("list", .list): true
            case ("number", _), ("integer", _), ("bool", _), ("boolean", _), ("list", _): false
            case (_, .string): true
            default: false
            }
            guard ok else {
                throw ConnectorError(code: "ai_extract", message: "the model's \(name) is not a \(type.text)", retryable: false)
            }
            result[name] = v
        }
        return .map(result)
    }

    private func complete(_ body: Value, _ context: ConnectorContext) async throws -> Value {
        var request = HTTPClientRequest(url: baseURL + "/chat/completions")
        request.method = .POST
        if let apiKey, !apiKey.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body.jsonText))
        let (response, bytes) = try await context.send(request, to: "the AI provider", limit: 4 << 20)
        let status = Int(response.status.code)
        let answer = Value(json: String(buffer: bytes)) ?? .null
        if (200..<300).contains(status), case .map = answer { return answer }
        throw Self.failure(status: status, answer: answer, retryAfterMS: response.headers.first(name: "retry-after-ms"),
                           retryAfter: response.headers.first(name: "retry-after"))
    }

    /// An error answer as a connector failure. The provider's message is not passed on: it may quote the prompt.
    public static func failure(status: Int, answer: Value, retryAfterMS: String?, retryAfter: String?) -> ConnectorError {
        let code = answer["error"]["code"].nonEmptyText ?? answer["error"]["type"].nonEmptyText
        if code == "insufficient_quota" {
            return ConnectorError(code: "ai_insufficient_quota", message: "the AI account has no quota left: retrying will not help",
                                  retryable: false)
        }
        var wait: Int64?
        if let ms = retryAfterMS.flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }), ms >= 0 {
            wait = Int64((ms / 1000).rounded(.up))
        } else {
            wait = HTTPWebhookConnector.retryAfter(retryAfter, now: Date())
        }
        let retryable = status == 408 || status == 409 || status == 429 || status >= 500
        return ConnectorError(code: "ai_http_\(status)", message: "the AI provider answered \(status)" + (code.map { " (\($0))" } ?? ""),
                              retryable: retryable, retryAfter: retryable ? wait : nil)
    }
}

extension AIConnector {
    /// The actions it performs, with their JSON Schemas.
    public static let actions: [ActionDefinition] = [
        ActionDefinition(
            name: "ai.chat",
            summary: "Ask an OpenAI-compatible model, with the conversation's history and optional knowledge",
            parameters: ActionSchema.object([
                "prompt": ActionSchema.nonEmpty,
                "system": ActionSchema.string,
                "model": ActionSchema.string,
                "history": ["type": "integer", "minimum": 0, "maximum": 50],
                "knowledge": ActionSchema.string,
                "extract": ["type": "object", "description": "fields to extract, name: type"],
                "variables": ["type": "object", "description": "what the model should know about the conversation"],
                "tools": ["type": "array", "items": ["type": "string"], "description": "actions the model may call"],
                "temperature": ["type": "number", "minimum": 0, "maximum": 2],
                "max_tokens": ["type": "integer", "minimum": 1, "maximum": 32000],
            ], required: ["prompt"]),
            result: ActionSchema.string
        ),
    ]
}

/// The `ai` channel kind: an OpenAI-compatible provider account that `ai.chat` (and the `ai:` block) asks, with the
/// conversation's history and the other actions as tools.
public struct AIChannel: ChannelDriver {
    public init() {}

    public let kind = "ai"
    public let summary = "An OpenAI-compatible model provider"
    public let fields = [
        ChannelField("api_key", .secret(min: 8), summary: "the provider's API key"),
        ChannelField("base_url", .url, summary: "the API's base, https://api.openai.com/v1 by default"),
        ChannelField("model", .text(max: 200), summary: "the model asked when a block names none"),
    ]
    public var actions: [ActionDefinition] { AIConnector.actions }

    public func perform(action: String, parameters: Value, account: ChannelAccount, context: ConnectorContext,
                        store: any ChannelStore) async throws -> Value {
        try await AIConnector(baseURL: account.config["base_url"].nonEmptyText, apiKey: account.credentials["api_key"].nonEmptyText,
                              model: account.config["model"].nonEmptyText,
                              history: { _, n in try await store.history(limit: n).map { AIConnector.Turn(fromContact: $0.fromContact, text: $0.text) } },
                              tools: store.tools, performTool: store.performTool)
            .perform(action: action, parameters: parameters, context: context)
    }
}
