import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Synchronization
import Testing

/// `POST /v1/flows/{name}/start`: the business starts a conversation, once per Idempotency-Key, never for a contact
/// who opted out, in one already busy, or on WhatsApp outside the window without a template.
@Suite struct StartTests {
    static let reminder = """
        flow: remind
        trigger: { channel: api }
        variables:
          appointment: string
          reminders: { type: number, default: 3 }
        start: hello
        blocks:
          hello:
            text: "Hi {{ contact.name ?? 'there' }}, your appointment is {{ appointment }} ({{ reminders }})"
            next: confirm
          confirm:
            ask: "Can you come?"
            save: answer
            next: thanks
          thanks:
            text: "Thanks: {{ answer }}"
        """

    static func publish(_ client: some TestClientProtocol, _ key: String, _ name: String, _ source: String) async throws {
        try await client.execute(uri: "/v1/flows/\(name)", method: .put, headers: RouterTests.auth(key), body: RouterTests.body(source)) {
            #expect($0.status == .created, "\(String(buffer: $0.body))")
        }
        try await client.execute(uri: "/v1/flows/\(name)/publish", method: .post, headers: RouterTests.auth(key)) { #expect($0.status == .created) }
    }

    @Test(arguments: Backend.available)
    func aStartedFlowRunsOnceAndRespectsTheContact(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let channel = try await ContactsTests.channel(client, rig.adminA)
            func start(_ body: String, key: String? = nil, as caller: String? = nil, flow: String = "remind")
                async throws -> (status: HTTPResponse.Status, body: Value, replayed: Bool)
            {
                var headers = RouterTests.auth(caller ?? rig.adminA)
                if let key { headers[HTTPField.Name("Idempotency-Key")!] = key }
                return try await client.execute(uri: "/v1/flows/\(flow)/start", method: .post, headers: headers, body: RouterTests.body(body)) {
                    ($0.status, RouterTests.json($0), $0.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
                }
            }
            func texts(_ conversation: String) async throws -> [String] {
                try await rig.store.messages(conversation: conversation, tenant: "a").map(\.text)
            }
            let nine = #"{"contact": {"channel": "\#(channel)", "address": "900"}, "variables": {"appointment": "tomorrow 9:00"}}"#
            #expect(try await start(nine).status == .notFound, "not published yet")
            try await Self.publish(client, rig.adminA, "remind", Self.reminder)
            #expect(try await start(nine, as: rig.agentA).status == .forbidden)

            let first = try await start(nine, key: "reminder-900")
            #expect(first.status == .created && first.body["flow"] == "remind" && first.body["version"] == 1 && !first.replayed)
            let conversation = first.body["conversation"].text
            try await rig.engine.drain()
            #expect(try await texts(conversation) == ["Hi there, your appointment is tomorrow 9:00 (3)", "Can you come?"],
                    "the variable given, the default for the one not given")
            let record = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "900"))
            #expect(record.id == first.body["contact"].text, "a contact who had no record gets one")
            let trace = try await rig.store.traces(conversation: conversation, tenant: "a")
            #expect(trace.first?.event["kind"] == "start" && trace.first?.event["variables"]["appointment"] == "tomorrow 9:00")

            // Retried with its key: the same answer, nothing new; the key with another request is refused.
            let again = try await start(nine, key: "reminder-900")
            #expect(again.status == .created && again.body == first.body && again.replayed)
            #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: "900").count == 1)
            let other = try await start(#"{"contact": {"channel": "\#(channel)", "address": "900"}, "variables": {"appointment": "10:00"}}"#, key: "reminder-900")
            #expect(other.status == .conflict && other.body["code"] == "idempotency_key_reused")
            // Without a key, a contact in a conversation is not started again.
            let busy = try await start(nine)
            #expect(busy.status == .conflict && busy.body["code"] == "in_conversation" && busy.body["conversation"].text == conversation)

            // The contact answers: the started conversation goes on like any other.
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: RouterTests.auth(rig.adminA),
                                     body: RouterTests.body(#"{"from": "900", "text": "yes", "id": "r1"}"#)) { #expect($0.status == .accepted) }
            try await rig.engine.drain()
            #expect(try await texts(conversation).suffix(2) == ["yes", "Thanks: yes"])
            #expect(try await rig.store.conversation(id: conversation, tenant: "a")?.status == .ended)

            // A variable given overrides its default; a name the flow does not have, or a built-in one, is refused.
            let overridden = try await start(#"{"contact": {"channel": "\#(channel)", "address": "901"}, "variables": {"appointment": "noon", "reminders": 1}}"#)
            #expect(overridden.status == .created)
            try await rig.engine.drain()
            #expect(try await texts(overridden.body["conversation"].text).first == "Hi there, your appointment is noon (1)")
            for bad in [#"{"appointment": "x", "colour": "red"}"#, #"{"contact": "x"}"#] {
                let refused = try await start(#"{"contact": {"channel": "\#(channel)", "address": "905"}, "variables": \#(bad)}"#)
                #expect(refused.status == .badRequest, "refused: \(bad)")
            }
            for bad in [#"{}"#, #"{"contact": {"id": "x", "channel": "y"}}"#, #"{"contact": {"channel": "\#(channel)"}}"#, #"{"contact": {"id": "ct_x"}, "when": 1}"#] {
                #expect(try await start(bad).status == .badRequest, "refused: \(bad)")
            }
            #expect(try await start(#"{"contact": {"id": "ct_nobody"}}"#).status == .notFound)
            #expect(try await start(#"{"contact": {"channel": "ch_nope", "address": "1"}}"#).status == .notFound)

            // By the contact's id, with its name; never for one who opted out; never another tenant's.
            let ana = try await client.execute(uri: "/v1/contacts", method: .post, headers: RouterTests.auth(rig.adminA), body: RouterTests.body(
                #"{"channel": "\#(channel)", "address": "903", "name": "Ana"}"#)) { RouterTests.json($0)["id"].text }
            #expect(try await start(#"{"contact": {"id": "\#(ana)"}, "variables": {"appointment": "3pm"}}"#, as: rig.adminB).status == .notFound)
            let byID = try await start(#"{"contact": {"id": "\#(ana)"}, "variables": {"appointment": "3pm"}}"#)
            #expect(byID.status == .created && byID.body["contact"].text == ana)
            try await rig.engine.drain()
            #expect(try await texts(byID.body["conversation"].text).first == "Hi Ana, your appointment is 3pm (3)")
            let bia = try await client.execute(uri: "/v1/contacts", method: .post, headers: RouterTests.auth(rig.adminA), body: RouterTests.body(
                #"{"channel": "\#(channel)", "address": "904", "opted_out": true}"#)) { RouterTests.json($0)["id"].text }
            let refused = try await start(#"{"contact": {"id": "\#(bia)"}}"#)
            #expect(refused.status == .conflict && refused.body["code"] == "opted_out")
            #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: "904").isEmpty)

            // A key is kept for a day (`idempotencyKeyLifetime`); once purged, it starts a conversation again.
            #expect(try await rig.store.purgeIdempotencyKeys(before: rig.engine.now.adding(seconds: -3600)) == 0)
            #expect(try await rig.store.purgeIdempotencyKeys(before: rig.engine.now.adding(seconds: 1)) == 1)
            let anew = try await start(#"{"contact": {"channel": "\#(channel)", "address": "900"}, "variables": {"appointment": "10:00"}}"#, key: "reminder-900")
            #expect(anew.status == .created && !anew.replayed && anew.body["conversation"] != first.body["conversation"])
        }
        let starts = try await rig.store.auditLog(tenant: "a").filter { $0.action == "flow.start" }
        #expect(starts.count == 4, "one entry per conversation started, none for a replay")
        await rig.store.close()
    }

    /// A start and the contact's own message arriving together: whichever commits first takes the contact's slot, the
    /// other joins it (the message) or is refused (the start, 409 in_conversation); one conversation, nothing lost.
    @Test(arguments: Backend.available)
    func aStartRacingTheContactsMessageMakesOneConversation(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await ContactsTests.channel(client, rig.adminA)
            try await Self.publish(client, rig.adminA, "remind", Self.reminder)
            let addresses = (0..<12).map { "95\($0)" }
            let starts = try await withThrowingTaskGroup(of: HTTPResponse.Status?.self) { group in
                for address in addresses {
                    group.addTask {
                        try await client.execute(uri: "/v1/flows/remind/start", method: .post, headers: a, body: RouterTests.body(
                            #"{"contact": {"channel": "\#(channel)", "address": "\#(address)"}, "variables": {"appointment": "9:00"}}"#)) { $0.status }
                    }
                    group.addTask {
                        try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                                 body: RouterTests.body(#"{"from": "\#(address)", "text": "hello there", "id": "m-\#(address)"}"#)) {
                            #expect($0.status == .accepted)
                        }
                        return nil
                    }
                }
                var statuses: [HTTPResponse.Status] = []
                for try await s in group { if let s { statuses.append(s) } }
                return statuses
            }
            #expect(starts.allSatisfy { $0 == .created || $0 == .conflict }, "\(starts)")
            try await rig.engine.drain()
            for address in addresses {
                let conversations = try await rig.store.conversations(tenant: "a", status: nil, contact: address)
                #expect(conversations.count == 1, "\(address): \(conversations.count) conversations")
                let texts = try await rig.store.messages(conversation: conversations.first?.id ?? "", tenant: "a").map(\.text)
                #expect(texts.contains("hello there"), "\(address): the message is in the one conversation: \(texts)")
            }
            #expect(try await rig.store.backlog(now: rig.engine.now).events == 0)
        }
        await rig.store.close()
    }

    /// With `at`, the conversation is stored scheduled: it holds no slot and sends nothing until its time, then runs
    /// as if started then, unless the contact opted out or is in another conversation by then; it can be cancelled.
    @Test(arguments: Backend.available)
    func aStartForLaterRunsAtItsTime(_ backend: Backend) async throws {
        let time = Mutex(Timestamp(milliseconds: 1_800_000_000_000))
        let rig = try await RouterTests.Rig(backend: backend, clock: { time.withLock { $0 } })
        let t0 = time.withLock { $0 }, later = t0.adding(seconds: 3600)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await ContactsTests.channel(client, rig.adminA)
            try await Self.publish(client, rig.adminA, "remind", Self.reminder)
            func start(_ address: String, at: String?, key: String? = nil) async throws -> (status: HTTPResponse.Status, body: Value) {
                var headers = a
                if let key { headers[HTTPField.Name("Idempotency-Key")!] = key }
                let when = at.map { #", "at": "\#($0)""# } ?? ""
                let body = #"{"contact": {"channel": "\#(channel)", "address": "\#(address)"}, "variables": {"appointment": "9:00"}\#(when)}"#
                return try await client.execute(uri: "/v1/flows/remind/start", method: .post, headers: headers, body: RouterTests.body(body)) {
                    ($0.status, RouterTests.json($0))
                }
            }
            func conversation(_ id: String) async throws -> ConversationRecord { try #require(try await rig.store.conversation(id: id, tenant: "a")) }
            func messages(_ id: String) async throws -> [MessageRecord] { try await rig.store.messages(conversation: id, tenant: "a") }

            let first = try await start("920", at: later.iso8601, key: "k-920")
            #expect(first.status == .accepted && first.body["scheduled_at"].text == later.iso8601)
            let replay = try await start("920", at: later.iso8601, key: "k-920")
            #expect(replay.status == .accepted && replay.body == first.body)
            let waiting = first.body["conversation"].text
            let runs = try await start("921", at: "2027-01-15T06:00:00-03:00")  // the same instant, written in São Paulo time
            #expect(runs.status == .accepted && runs.body["scheduled_at"].text == later.iso8601)
            let optingOut = try await start("922", at: later.iso8601).body["conversation"].text
            let cancelled = try await start("923", at: later.iso8601).body["conversation"].text
            try await rig.engine.drain()
            #expect(try await conversation(waiting).status == .scheduled, "nothing runs before its time")
            #expect(try await messages(waiting).isEmpty)
            try await client.execute(uri: "/v1/conversations/\(waiting)", method: .get, headers: a) { #expect(RouterTests.json($0)["status"] == "scheduled") }

            // It holds no slot: the contact can be started now too (and will be busy at the scheduled time).
            let now = try await start("920", at: nil)
            #expect(now.status == .created)
            let contact = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "922"))
            #expect(try await client.execute(uri: "/v1/contacts/\(contact.id)", method: .patch, headers: a,
                                             body: RouterTests.body(#"{"opted_out": true}"#)) { $0.status } == .ok)
            #expect(try await client.execute(uri: "/v1/conversations/\(cancelled)/cancel", method: .post, headers: a) { $0.status } == .accepted)
            #expect(try await client.execute(uri: "/v1/conversations/\(runs.body["conversation"].text)/handback", method: .post, headers: a) { $0.status }
                    == .conflict, "before its time a scheduled conversation can only be cancelled")
            for bad in ["tomorrow", "2027-02-30T09:00:00Z"] {
                #expect(try await start("924", at: bad).status == .badRequest, "refused: at \(bad)")
            }
            #expect(try await start("925", at: t0.adding(seconds: -60).iso8601).status == .created, "a time already past starts it now")

            time.withLock { $0 = later.adding(seconds: 1) }
            try await rig.engine.drain()
            let ran = try await messages(runs.body["conversation"].text)
            #expect(ran.map(\.text) == ["Hi there, your appointment is 9:00 (3)", "Can you come?"])
            #expect(ran.first?.at == later, "the first turn runs as of its time")
            #expect(try await conversation(runs.body["conversation"].text).status == .waiting)
            let busy = try await conversation(waiting)
            #expect(busy.status == .ended && busy.failure == "not started at its time: the contact was in conversation \(now.body["conversation"].text)")
            #expect(try await conversation(optingOut).failure == "not started at its time: the contact opted out")
            #expect(try await conversation(cancelled).status == .ended)
            #expect(try await messages(cancelled).isEmpty)
            #expect(try await messages(optingOut).isEmpty)
            #expect(try await rig.store.backlog(now: later.adding(seconds: 1)).events == 0)
        }
        await rig.store.close()
    }

    @Test func onWhatsAppAStartOutsideTheWindowNeedsATemplate() async throws {
        let rig = try await RouterTests.Rig()
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            // The Graph API's address is a closed loopback port: nothing here is delivered.
            let wa = try await client.execute(uri: "/v1/channels", method: .post, headers: a, body: RouterTests.body("""
                {"kind": "whatsapp", "name": "main", "phone_number_id": "106540352242922", "verify_token": "verify-me-please",
                 "app_secret": "app-secret-0123", "access_token": "EAAG-token-xyz", "graph_url": "http://127.0.0.1:9"}
                """)) { RouterTests.json($0)["id"].text }
            let plain = "flow: news\ntrigger: { channel: whatsapp }\nstart: hi\nblocks:\n  hi:\n    text: \"News!\"\n"
            try await Self.publish(client, rig.adminA, "news", plain)
            func start(_ flow: String, _ address: String = "5511988887777") async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: "/v1/flows/\(flow)/start", method: .post, headers: a, body: RouterTests.body(
                    #"{"contact": {"channel": "\#(wa)", "address": "\#(address)"}}"#)) { ($0.status, RouterTests.json($0)) }
            }
            let (status, problem) = try await start("news")
            #expect(status == .conflict && problem["code"] == "template_required", "\(problem)")
            let templated = "flow: news2\ntrigger: { channel: whatsapp }\nwhatsapp_template: { name: news_update, language: pt_BR }\nstart: hi\nblocks:\n  hi:\n    text: \"News!\"\n"
            try await Self.publish(client, rig.adminA, "news2", templated)
            #expect(try await start("news2").0 == .created)
            // The compiler knows what a flow sends first: a whatsapp.template on every way to the first message is
            // enough; one way that sends text first is not.
            let opening = """
                flow: news3
                trigger: { channel: whatsapp }
                start: route
                blocks:
                  route:
                    next:
                      - when: "contact.attributes.vip == true"
                        goto: vip
                      - goto: plain
                  vip:
                    use: whatsapp.template
                    with: { name: vip_news, language: pt_BR }
                    next: more
                  plain:
                    contact: { tag: news }
                    next: templated
                  templated:
                    use: whatsapp.template
                    with: { name: news_update, language: pt_BR }
                    next: more
                  more:
                    text: "Reply to read more"
                """
            try await Self.publish(client, rig.adminA, "news3", opening)
            #expect(try await start("news3", "5511988880003").0 == .created, "both ways open with a template")
            try await Self.publish(client, rig.adminA, "news4", opening.replacingOccurrences(of: "flow: news3", with: "flow: news4")
                .replacingOccurrences(of: "next: templated", with: "next: more"))
            #expect(try await start("news4", "5511988880004").1["code"] == "template_required", "one way sends text first")
            // An api flow does not start on a WhatsApp channel.
            try await Self.publish(client, rig.adminA, "remind", Self.reminder)
            let (wrong, why) = try await start("remind")
            #expect(wrong == .conflict && why["code"] == "wrong_channel")
        }
        await rig.store.close()
    }
}
