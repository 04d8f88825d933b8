import Connectors
import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import FlowlineTestKit
import Testing

/// `AIConnector` against fakellm (replies, tool calls, 429s) and a small fake of our own for what fakellm does not
/// send: `retry-after-ms` and `retry-after` headers, `insufficient_quota`, invalid tool arguments, a hang.
@Suite struct AIConnectorTests {
    static func context(_ key: String = "conv:1") -> ConnectorContext {
        ConnectorContext(tenant: "t", conversation: "conv", idempotencyKey: key, attempt: 1)
    }
    static func unique(_ s: String) -> String { "\(s) \(UUID().uuidString.prefix(8))" }

    static func failure(_ body: () async throws -> Value) async -> ConnectorError? {
        do { _ = try await body() } catch let e as ConnectorError { return e } catch { Issue.record("\(error)") }
        return nil
    }

    @Test func repliesUseKnowledgeAndHistory() async throws {
        let llm = try Peer.value("FLOWLINE_TEST_FAKELLM")
        let plain = AIConnector(baseURL: llm, apiKey: "sk-test")
        #expect(try await plain.perform(action: "ai.chat", parameters: ["prompt": .string(Self.unique("When do you open?")),
                                                                        "knowledge": "Opening hours: 9-18h"], context: Self.context()) == "We open at 9.")
        #expect(try await plain.perform(action: "ai.chat", parameters: ["prompt": .string(Self.unique("When do you open?"))],
                                        context: Self.context()) == "I do not know.", "without the knowledge, no answer from it")
        let remembering = AIConnector(baseURL: llm, apiKey: "sk-test", history: { _, n in
            Array([AIConnector.Turn(fromContact: true, text: "remember-me-42"), AIConnector.Turn(fromContact: false, text: "ok")].suffix(n))
        })
        #expect(try await remembering.perform(action: "ai.chat", parameters: ["prompt": .string(Self.unique("what did I say?")), "history": 2],
                                              context: Self.context()) == "You said remember-me-42.")
        #expect(try await remembering.perform(action: "ai.chat", parameters: ["prompt": .string(Self.unique("what did I say?")), "history": 1],
                                              context: Self.context()) == "I do not know.", "history: 1 is only the last message")
    }

    @Test func extractionAnswersTypedFields() async throws {
        let llm = try Peer.value("FLOWLINE_TEST_FAKELLM")
        let ai = AIConnector(baseURL: llm, apiKey: "sk-test")
        let lead = try await ai.perform(action: "ai.chat", parameters: [
            "prompt": .string(Self.unique("extract this lead: Ana, 5k")), "extract": ["name": "string", "budget": "number", "city": "string"],
        ], context: Self.context())
        #expect(lead == ["name": "Ana", "budget": 5000, "city": .null])
        let wrong = await Self.failure {
            try await ai.perform(action: "ai.chat", parameters: ["prompt": .string(Self.unique("extract this lead")), "extract": ["name": "number"]],
                                 context: Self.context())
        }
        #expect(wrong?.code == "ai_extract" && wrong?.retryable == false)
    }

    @Test func toolCallsRunConnectorActionsAndFeedTheirResultsBack() async throws {
        let llm = try Peer.value("FLOWLINE_TEST_FAKELLM")
        let calls = Mutex<[(String, Value, String)]>([])
        let crm = ActionDefinition(name: "crm.lookup", summary: "Find a contact", parameters: ["type": "object"], result: ["type": "object"])
        let ai = AIConnector(baseURL: llm, apiKey: "sk-test", tools: [crm]) { action, arguments, context in
            calls.withLock { $0.append((action, arguments, context.idempotencyKey)) }
            return ["plan": "gold-plan"]
        }
        let answer = try await ai.perform(action: "ai.chat", parameters: ["prompt": .string(Self.unique("what is my plan?")), "tools": ["crm.lookup"]],
                                          context: Self.context("conv:5"))
        #expect(answer == "Your plan is gold.")
        let made = calls.withLock { $0 }
        try #require(made.count == 1)
        #expect(made[0].0 == "crm.lookup" && made[0].1 == ["phone": "5511"])
        #expect(made[0].2 == "conv:5:tool:0:0", "each tool call has its own stable idempotency key")
        let unknown = await Self.failure {
            try await ai.perform(action: "ai.chat", parameters: ["prompt": "x", "tools": ["stripe.checkout"]], context: Self.context())
        }
        #expect(unknown?.code == "ai_tool_unknown")
    }

    @Test func fakellmsRateLimitIsRetryable() async throws {
        let llm = try Peer.value("FLOWLINE_TEST_FAKELLM")
        let ai = AIConnector(baseURL: llm, apiKey: "sk-test")
        let prompt = Self.unique("flaky question")
        let limited = await Self.failure { try await ai.perform(action: "ai.chat", parameters: ["prompt": .string(prompt)], context: Self.context()) }
        #expect(limited?.code == "ai_http_429" && limited?.retryable == true)
        #expect(try await ai.perform(action: "ai.chat", parameters: ["prompt": .string(prompt)], context: Self.context()) == "Recovered answer")
    }

    /// What fakellm cannot say: retry hints in headers, a quota error, tool arguments that are not JSON.
    final class Fake: Sendable {
        let requests = Mutex<[Value]>([])
        var app: some ApplicationProtocol {
            let router = Router()
            router.post("v1/chat/completions") { request, _ -> Response in
                let body = Value(json: String(buffer: try await request.body.collect(upTo: 1 << 20))) ?? .null
                let n = self.requests.withLock { $0.append(body); return $0.count }
                let prompt = body["messages"].listValue.last?["content"].text ?? ""
                func answer(_ status: HTTPResponse.Status, _ headers: HTTPFields = [:], _ json: Value) -> Response {
                    Response(status: status, headers: headers + [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json.jsonText)))
                }
                switch prompt {
                case "ms": return answer(.tooManyRequests, [HTTPField.Name("retry-after-ms")!: "1500", HTTPField.Name("retry-after")!: "30"],
                                         ["error": ["type": "requests", "code": "rate_limit_exceeded"]])
                case "seconds": return answer(.serviceUnavailable, [HTTPField.Name("retry-after")!: "7"], ["error": ["type": "server_error"]])
                case "quota": return answer(.tooManyRequests, [HTTPField.Name("retry-after")!: "1"],
                                            ["error": ["type": "insufficient_quota", "code": "insufficient_quota", "message": "You exceeded your quota"]])
                case "bad key": return answer(.unauthorized, [:], ["error": ["type": "invalid_request_error", "code": "invalid_api_key"]])
                case "hang":
                    try await Task.sleep(for: .seconds(2))
                    return answer(.ok, [:], [:])
                default:
                    // The first round calls a tool with broken arguments; the next answers with what the tool said.
                    if n % 2 == 1 {
                        return answer(.ok, [:], ["choices": [["message": ["role": "assistant", "content": .null, "tool_calls": [[
                            "id": "call_1", "type": "function", "function": ["name": "crm__lookup", "arguments": "{\"phone\": 55"],
                        ]]]]]])
                    }
                    let tool = body["messages"].listValue.last?["content"].text ?? ""
                    return answer(.ok, [:], ["choices": [["message": ["role": "assistant", "content": .string("tool said: \(tool)")]]]])
                }
            }
            return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        }
    }

    @Test func retryHintsQuotaAndInvalidToolArguments() async throws {
        let fake = Fake()
        try await fake.app.test(.live) { client in
            let called = Mutex(0)
            let crm = ActionDefinition(name: "crm.lookup", summary: "Find", parameters: ["type": "object"], result: ["type": "object"])
            let ai = AIConnector(baseURL: "http://127.0.0.1:\(client.port!)/v1", apiKey: "sk-test", tools: [crm]) { _, _, _ in
                called.withLock { $0 += 1 }
                return [:]
            }
            func run(_ prompt: String) async -> ConnectorError? {
                await Self.failure { try await ai.perform(action: "ai.chat", parameters: ["prompt": .string(prompt)], context: Self.context()) }
            }
            let ms = await run("ms")
            #expect(ms?.retryable == true && ms?.retryAfter == 2, "retry-after-ms wins over retry-after, rounded up to seconds")
            let seconds = await run("seconds")
            #expect(seconds?.retryable == true && seconds?.retryAfter == 7)
            let quota = await run("quota")
            #expect(quota?.code == "ai_insufficient_quota" && quota?.retryable == false, "a spent quota is not retried")
            let key = await run("bad key")
            #expect(key?.code == "ai_http_401" && key?.retryable == false)

            let answer = try await ai.perform(action: "ai.chat", parameters: ["prompt": "look me up", "tools": ["crm.lookup"]], context: Self.context())
            #expect(answer.text.contains("invalid_arguments"), "the model hears its arguments were not JSON")
            #expect(called.withLock { $0 } == 0, "and the tool is not called with them")

            var hurried = Self.context()
            hurried.deadline = .now + .milliseconds(300)
            let hang = await Self.failure { try await ai.perform(action: "ai.chat", parameters: ["prompt": "hang"], context: hurried) }
            #expect(hang?.code == "unreachable" && hang?.retryable == true)
        }
    }

    /// An `ai:` block through the engine, with the tenant's ai channel: its history comes from the conversation.
    @Test func anAIBlockAnswersFromTheConversationsHistory() async throws {
        let llm = try Peer.value("FLOWLINE_TEST_FAKELLM")
        let flow = """
            flow: helper
            trigger: { channel: api }
            start: ask
            blocks:
              ask:
                ask: "Tell me something to remember"
                save: fact
                next: answer
              answer:
                ai: { prompt: "\(Self.unique("what did I say?"))", history: 4 }
                save: reply
                on_error: sorry
                next: done
              sorry:
                end: "Sorry: {{ error.code }}"
              done:
                end: "{{ reply }}"
            """
        let rig = try await RouterTests.Rig()
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/helper", method: .put, headers: a, body: RouterTests.body(flow)) {
                #expect($0.status == .created && RouterTests.json($0)["valid"] == true, "\(String(buffer: $0.body))")
            }
            try await client.execute(uri: "/v1/flows/helper/publish", method: .post, headers: a) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body(#"""
                {"kind": "ai", "name": "llm", "base_url": "\#(llm)", "api_key": "sk-test-123456", "model": "gpt-4o-mini"}
                """#)) { #expect($0.status == .created) }
            let api = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                               body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
            for (id, text) in [("m1", "hi"), ("m2", "remember-me-42")] {
                try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "9", "text": "\#(text)", "id": "\#(id)"}"#))
                try await rig.engine.drain()
            }
            let conversation = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "9").first)
            #expect(try await rig.store.messages(conversation: conversation.id, tenant: "a").last?.text == "You said remember-me-42.")
        }
        await rig.store.close()
    }
}

extension Value {
    var listValue: [Value] {
        if case .list(let l) = self { return l }
        return []
    }
}
