import Connectors
import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import FlowlineTestKit
import Testing

/// `N8NConnector` against `FakeN8N`, and resume links through the server: production and test paths, auth, the
/// synchronous answer, and a workflow that calls back once.
@Suite struct N8NConnectorTests {
    static func context(resume: ResumeLink? = nil) -> ConnectorContext {
        ConnectorContext(tenant: "t", conversation: "conv-1", idempotencyKey: "conv-1:2", attempt: 1, resume: resume)
    }

    static func failure(_ body: () async throws -> Value) async -> ConnectorError? {
        do { _ = try await body() } catch let e as ConnectorError { return e } catch { Issue.record("\(error)") }
        return nil
    }

    @Test func productionAndTestPathsAuthAndTheWorkflowsAnswer() async throws {
        let fake = FakeN8N([
            FakeN8N.Workflow(path: "quote", basic: ("flowline", "n8n-pass"), answer: { body in ["price": 120, "for": body["item"]] }),
            FakeN8N.Workflow(path: "draft", active: false, listeningUntil: Date() + 120, header: ("X-N8N-Key", "k-123")),
            FakeN8N.Workflow(path: "sleeping", active: false, listeningUntil: Date() - 1),
        ])
        try await fake.app.test(.live) { client in
            let base = "http://127.0.0.1:\(client.port!)"
            let n8n = N8NConnector(baseURL: base, auth: .basic(user: "flowline", password: "n8n-pass"))
            let answer = try await n8n.perform(action: "n8n.trigger", parameters: ["webhook": "quote", "data": ["item": "chair"]], context: Self.context())
            #expect(answer == ["price": 120, "for": "chair"], "the last node's JSON is the result")
            let sent = try #require(fake.received.withLock { $0.first })
            #expect(sent.body["item"] == "chair" && sent.body["conversation"] == "conv-1")
            #expect(sent.headers[HTTPField.Name("Idempotency-Key")!] == "conv-1:2")

            // Wrong or missing credentials are permanent, as is a path n8n does not serve.
            let wrong = await Self.failure {
                try await N8NConnector(baseURL: base, auth: .basic(user: "flowline", password: "nope")).perform(
                    action: "n8n.trigger", parameters: ["webhook": "quote"], context: Self.context())
            }
            #expect(wrong?.code == "n8n_auth" && wrong?.retryable == false && wrong?.description.contains("nope") == false)
            let missing = await Self.failure {
                try await N8NConnector(baseURL: base).perform(action: "n8n.trigger", parameters: ["webhook": "quote"], context: Self.context())
            }
            #expect(missing?.code == "n8n_auth")
            // A test URL works while the editor listens, and never on the production path of an inactive workflow.
            let header = N8NConnector(baseURL: base, auth: .header(name: "X-N8N-Key", value: "k-123"))
            #expect(try await header.perform(action: "n8n.trigger", parameters: ["webhook": "draft", "mode": "test"], context: Self.context()) == ["ok": true])
            // A test URL serves one call: a second one (a retry, another conversation) finds nothing listening.
            for (path, mode) in [("draft", "test"), ("draft", "production"), ("sleeping", "test"), ("nowhere", "production")] {
                let e = await Self.failure {
                    try await header.perform(action: "n8n.trigger", parameters: ["webhook": .string(path), "mode": .string(mode)], context: Self.context())
                }
                #expect(e?.code == "n8n_not_registered" && e?.retryable == false, "\(path) \(mode)")
            }
            let noLinks = await Self.failure {
                try await n8n.perform(action: "n8n.trigger", parameters: ["webhook": "quote", "wait": "callback"], context: Self.context())
            }
            #expect(noLinks?.code == "n8n_no_resume")
        }
        let closed = ClosedPort()
        let unreachable = await Self.failure {
            var context = Self.context()
            context.deadline = .now + .milliseconds(300)
            return try await N8NConnector(baseURL: closed.url).perform(action: "n8n.trigger", parameters: ["webhook": "x"], context: context)
        }
        #expect(unreachable?.code == "unreachable" && unreachable?.retryable == true)
    }

    static let flow = """
        flow: order
        trigger: { channel: api }
        start: start_job
        blocks:
          start_job:
            use: n8n.trigger
            with: { webhook: approve, data: { item: "{{ message.text }}" }, wait: callback }
            save: job
            next: wait_job
          wait_job:
            wait_for: { event: resume, match: job.resume_token, timeout: 1h, on_timeout: late }
            save: result
            next: done
          late:
            end: "No answer"
          done:
            end: "Approved: {{ result.approved }} by {{ result.by }}"
        """

    /// Either order: the workflow calls back after its trigger was answered, or while the trigger is still waiting
    /// for its answer (the conversation is not yet waiting on the link): that POST is kept behind the answer, and
    /// both are accepted (the fake records 202).
    @Test(arguments: [false, true])
    func aWorkflowCallsBackThroughItsResumeLinkOnce(callbackFirst: Bool) async throws {
        let fake = FakeN8N([FakeN8N.Workflow(path: "approve", callback: { body in ["approved": true, "by": "n8n", "item": body["item"]] },
                                             callbackDelay: callbackFirst ? .zero : .milliseconds(300), answerAfterCallback: callbackFirst)])
        let rig = try await RouterTests.Rig()
        try await fake.app.test(.live) { n8n in
            try await rig.app.test(.live) { client in
                fake.callbackBase.withLock { $0 = "http://127.0.0.1:\(client.port!)" }
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/order", method: .put, headers: a, body: RouterTests.body(Self.flow))
                try await client.execute(uri: "/v1/flows/order/publish", method: .post, headers: a) { #expect($0.status == .created) }
                try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body(
                    #"{"kind": "n8n", "name": "automations", "base_url": "http://127.0.0.1:\#(n8n.port!)"}"#)) { #expect($0.status == .created) }
                let api = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
                try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "3", "text": "chair", "id": "m1"}"#))
                let conversation = try await Peers.eventually("the workflow has called back and the flow ended") { () -> ConversationRecord? in
                    try await rig.engine.drain()
                    let c = try await rig.store.conversations(tenant: "a", status: .ended, contact: "3").first
                    return c
                }
                let texts = try await rig.store.messages(conversation: conversation.id, tenant: "a").map(\.text)
                #expect(texts.last == "Approved: true by n8n")
                let sent = try #require(fake.received.withLock { $0.first })
                let url = sent.body["resume_url"].text
                #expect(url.hasPrefix("http://flowline.invalid/webhooks/resume/\(conversation.id)."))
                #expect(fake.callbacks.withLock { $0.map(\.status) } == [202])
                #expect(fake.order.withLock { $0 } == (callbackFirst ? ["called back", "answered"] : ["answered", "called back"]),
                        "the order this case is about happened")

                // The link is single-use; a made-up or malformed one resumes nothing either.
                let path = String(url.dropFirst("http://flowline.invalid".count))
                try await client.execute(uri: path, method: .post, body: RouterTests.body(#"{"approved": false}"#)) { #expect($0.status == .notFound) }
                let forged = "/webhooks/resume/\(conversation.id).\(String(repeating: "ab", count: 32))"
                try await client.execute(uri: forged, method: .post, body: RouterTests.body("{}")) { #expect($0.status == .notFound) }
                try await client.execute(uri: "/webhooks/resume/nonsense", method: .post, body: RouterTests.body("{}")) { #expect($0.status == .notFound) }
            }
        }
        await rig.store.close()
    }

    @Test func aResumeLinkTakesJSONOnlyAndExpiresWithItsWait() async throws {
        let clock = APIChannelConnectorTests.Clock()
        let fake = FakeN8N([FakeN8N.Workflow(path: "approve", callback: nil)])
        let rig = try await RouterTests.Rig(clock: { clock.now })
        try await fake.app.test(.live) { n8n in
            try await rig.app.test(.router) { client in
                let a = RouterTests.auth(rig.adminA)
                try await client.execute(uri: "/v1/flows/order", method: .put, headers: a, body: RouterTests.body(Self.flow))
                try await client.execute(uri: "/v1/flows/order/publish", method: .post, headers: a)
                try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body(
                    #"{"kind": "n8n", "name": "automations", "base_url": "http://127.0.0.1:\#(n8n.port!)"}"#))
                let api = try await client.execute(uri: "/v1/channels", method: .post, headers: a,
                                                   body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { RouterTests.json($0) }
                try await client.execute(uri: "/v1/channels/\(api["id"].text)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "4", "text": "desk", "id": "m1"}"#))
                try await rig.engine.drain()
                // This workflow answers synchronously (no callback), so the flow waits on the link it was given.
                let path = try #require(fake.received.withLock { $0.first }?.body["resume_url"].text.dropFirst("http://flowline.invalid".count))
                try await client.execute(uri: String(path), method: .post, body: RouterTests.body("not json")) { #expect($0.status == .badRequest) }
                clock.advance(seconds: 3601)
                try await rig.engine.drain()
                try await client.execute(uri: String(path), method: .post, body: RouterTests.body("{}")) { #expect($0.status == .notFound) }
                let conversation = try #require(try await rig.store.conversations(tenant: "a", status: .ended, contact: "4").first)
                #expect(try await rig.store.messages(conversation: conversation.id, tenant: "a").last?.text == "No answer")
            }
        }
        await rig.store.close()
    }
}
