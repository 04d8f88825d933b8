import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Foundation
import Synchronization
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Testing

/// Contacts as records: created, filtered in SQL, edited and deleted through the API, scoped by tenant; a contact who
/// writes first gets a record; a flow reads a contact's attributes and tags.
@Suite struct ContactsTests {
    static func channel(_ client: some TestClientProtocol, _ key: String) async throws -> String {
        try await client.execute(uri: "/v1/channels", method: .post, headers: RouterTests.auth(key),
                                 body: RouterTests.body(#"{"kind": "api", "name": "web"}"#)) { r in
            #expect(r.status == .created)
            return RouterTests.json(r)["id"].text
        }
    }

    static func publish(_ client: some TestClientProtocol, _ auth: HTTPFields, _ name: String, _ yaml: String) async throws {
        try await client.execute(uri: "/v1/flows/\(name)", method: .put, headers: auth, body: RouterTests.body(yaml)) { #expect($0.status == .created) }
        try await client.execute(uri: "/v1/flows/\(name)/publish", method: .post, headers: auth) { #expect($0.status == .created) }
    }

    /// The last message of a contact's latest conversation in tenant `a`.
    static func lastMessage(_ store: SQLStore, to contact: String) async throws -> String? {
        guard let c = try await store.conversations(tenant: "a", status: nil, contact: contact).first else { return nil }
        return try await store.messages(conversation: c.id, tenant: "a").last?.text
    }

    /// A clock a millisecond later at each reading, so contacts created one after another sort in that order
    /// (the list is oldest first; ties go by id, which is random).
    final class TickingClock: Sendable {
        let time = Mutex(Timestamp(milliseconds: 1_800_000_000_000))
        var now: Timestamp { time.withLock { $0 = Timestamp(milliseconds: $0.milliseconds + 1); return $0 } }
    }

    @Test(arguments: Backend.available)
    func contactsAreCreatedFilteredEditedAndDeleted(_ backend: Backend) async throws {
        let clock = TickingClock()
        let rig = try await RouterTests.Rig(backend: backend, clock: { clock.now })
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.channel(client, rig.adminA)
            func post(_ body: String, _ key: String? = nil) async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: "/v1/contacts", method: .post, headers: key.map(RouterTests.auth) ?? a,
                                         body: RouterTests.body(body)) { ($0.status, RouterTests.json($0)) }
            }
            func addresses(_ query: String, _ key: String? = nil) async throws -> [String] {
                try await client.execute(uri: "/v1/contacts?\(query)", method: .get, headers: key.map(RouterTests.auth) ?? a) { r in
                    #expect(r.status == .ok, "\(query): \(String(buffer: r.body))")
                    guard case .list(let items) = RouterTests.json(r)["contacts"] else { return ["not a list"] }
                    return items.map { $0["address"].text }
                }
            }

            let ana = #"{"channel": "\#(channel)", "address": "5511900000001", "name": "Ana", "tags": ["vip", "2026"], "consent": {"source": "site form"}, "attributes": {"plan": "gold", "score": 42, "customer": true, "birthday": "1990-05-01", "langs": ["pt", "en"]}}"#
            #expect(try await post(ana, rig.agentA).0 == .forbidden, "an agent reads contacts, does not create them")
            let (created, first) = try await post(ana)
            #expect(created == .created)
            let anaID = first["id"].text
            #expect(anaID.hasPrefix("ct_") && first["opted_in"] == true && first["consent"]["source"] == "site form")
            #expect(first["attributes"]["score"] == 42 && first["attributes"]["langs"] == ["pt", "en"] && first["tags"] == ["vip", "2026"])
            let (duplicate, problem) = try await post(ana)
            #expect(duplicate == .conflict && problem["detail"].text.contains(anaID), "the existing contact is named: \(problem)")
            #expect(try await post(#"{"channel": "ch_nope", "address": "1"}"#).0 == .notFound)
            #expect(try await post(#"{"channel": "\#(channel)", "address": "1"}"#, rig.adminB).0 == .notFound, "another tenant's channel")
            for bad in [#""attributes": {"first-name": "x"}"#, #""attributes": {"address": {"city": "x"}}"#, #""tags": ["no spaces"]"#,
                        #""colour": "red""#, #""consent": {"at": "yesterday", "source": "x"}"#, #""opted_out": "yes""#] {
                #expect(try await post(#"{"channel": "\#(channel)", "address": "9", \#(bad)}"#).0 == .badRequest, "refused: \(bad)")
            }
            #expect(try await post(#"{"channel": "\#(channel)", "address": "5511900000002", "tags": ["lead"], "attributes": {"plan": "silver", "score": 7}}"#).0 == .created)
            #expect(try await post(#"{"channel": "\#(channel)", "address": "5511900000003", "name": "100% Bia"}"#).0 == .created)

            let (one, two, three) = ("5511900000001", "5511900000002", "5511900000003")
            #expect(try await addresses("") == [one, two, three])
            #expect(try await addresses("", rig.agentA) == [one, two, three], "agents read contacts")
            #expect(try await addresses("tag=vip") == [one])
            #expect(try await addresses("tag=vip&tag=lead") == [], "every tag given")
            #expect(try await addresses("attribute=score:gte:10") == [one])
            #expect(try await addresses("attribute=score:lt:10") == [two], "numerically: 7 < 10 though \"7\" > \"10\"")
            #expect(try await addresses("attribute=plan:eq:gold") == [one])
            #expect(try await addresses("attribute=plan:ne:gold") == [two, three], "ne includes contacts without the attribute")
            #expect(try await addresses("attribute=plan:exists") == [one, two])
            #expect(try await addresses("attribute=plan:contains:OL") == [one], "contains ignores ASCII case")
            #expect(try await addresses("attribute=langs:eq:en") == [one], "a list matches by an item")
            #expect(try await addresses("attribute=birthday:lt:2000-01-01") == [one], "dates compare as text")
            #expect(try await addresses("attribute=customer:eq:true") == [one])
            #expect(try await addresses("tag=lead&attribute=score:lt:10") == [two])
            #expect(try await addresses("opted_in=true") == [one])
            #expect(try await addresses("opted_in=false") == [two, three])
            #expect(try await addresses("q=0002") == [two])
            #expect(try await addresses("q=ana") == [one], "by name, ignoring case")
            #expect(try await addresses("q=100%25") == [three], "a % is taken literally")
            #expect(try await addresses("q=%25%25") == [], "and matches no everything")
            #expect(try await addresses("channel=\(channel)&limit=1&offset=1") == [two])
            try await client.execute(uri: "/v1/contacts?limit=1", method: .get, headers: a) { #expect(RouterTests.json($0)["total"] == 3) }
            for bad in ["attribute=score:between:1", "attribute=score:gte", "attribute=1x:exists", "tag=no%20spaces", "opted_in=yes",
                        "seen_after=today", "attribute=plan:eq:a%00b", "channel=", "tag="] {
                try await client.execute(uri: "/v1/contacts?\(bad)", method: .get, headers: a) { #expect($0.status == .badRequest, "refused: \(bad)") }
            }
            #expect(try await addresses("", rig.adminB) == [], "another tenant sees none")
            try await client.execute(uri: "/v1/contacts/\(anaID)", method: .get, headers: RouterTests.auth(rig.adminB)) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v1/contacts/\(anaID)", method: .get, headers: a) { r in
                #expect(r.status == .ok && RouterTests.json(r)["name"] == "Ana" && RouterTests.json(r)["conversations_total"] == 0)
            }

            // An edit names what changes: attributes merge (null removes), tags are added and removed.
            func patch(_ id: String, _ body: String, _ key: String? = nil) async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: "/v1/contacts/\(id)", method: .patch, headers: key.map(RouterTests.auth) ?? a,
                                         body: RouterTests.body(body)) { ($0.status, RouterTests.json($0)) }
            }
            let before = try #require(try await rig.store.contact(id: anaID, tenant: "a"))
            #expect(try await patch(anaID, #"{"name": "Ana B"}"#, rig.agentA).0 == .forbidden)
            #expect(try await patch(anaID, #"{"name": "Ana B"}"#, rig.adminB).0 == .notFound)
            let (edited, after) = try await patch(anaID, #"{"attributes": {"score": 50, "plan": null}, "add_tags": ["customer", "vip"], "remove_tags": ["2026"]}"#)
            #expect(edited == .ok && after["attributes"]["score"] == 50 && after["attributes"]["plan"] == .null && after["tags"] == ["vip", "customer"])
            #expect(after["attributes"]["birthday"] == "1990-05-01", "the attributes not named are kept")
            #expect(try await addresses("attribute=plan:exists") == [two], "the filter tables follow the edit")
            #expect(try await addresses("tag=customer") == [one])
            #expect(try await addresses("tag=2026") == [])
            #expect(try await patch(anaID, #"{"address": "1"}"#).0 == .badRequest, "the address does not change")
            #expect(try await patch(anaID, "{}").0 == .badRequest, "an edit names what it changes")
            let fiftyTags = (0..<50).map { "\"t\($0)\"" }.joined(separator: ", ")
            #expect(try await patch(anaID, #"{"add_tags": [\#(fiftyTags)]}"#).0 == .conflict, "more than 50 tags with the ones kept")
            #expect(try await patch(anaID, #"{"opted_out": true}"#).1["opted_in"] == false)
            #expect(try await addresses("opted_in=true") == [])
            // An edit made over a stale read is refused, not merged unseen.
            #expect(try await rig.store.updateContact(before, over: before) == false)

            #expect(try await client.execute(uri: "/v1/contacts/\(anaID)", method: .delete, headers: RouterTests.auth(rig.agentA)) { $0.status } == .forbidden)
            #expect(try await client.execute(uri: "/v1/contacts/\(anaID)", method: .delete, headers: a) { $0.status } == .noContent)
            #expect(try await client.execute(uri: "/v1/contacts/\(anaID)", method: .get, headers: a) { $0.status } == .notFound)
            #expect(try await addresses("tag=vip") == [])
            #expect(try await addresses("attribute=score:gte:0") == [two])
        }
        let actions = try await rig.store.auditLog(tenant: "a").map(\.action)
        #expect(actions.filter { $0.hasPrefix("contact.") } == ["contact.create", "contact.create", "contact.create", "contact.update", "contact.update", "contact.delete"])
        await rig.store.close()
    }

    static let greeting = """
        flow: greet
        trigger: { channel: api }
        start: hello
        blocks:
          hello:
            text: "plan={{ contact.attributes.plan ?? 'none' }} vip={{ contains(contact.tags, 'vip') }} name={{ contact.name ?? '?' }}"
        """

    @Test(arguments: Backend.available)
    func aContactWhoWritesHasARecordAndFlowsReadItsAttributesAndTags(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.channel(client, rig.adminA)
            try await Self.publish(client, a, "greet", Self.greeting)
            try await client.execute(uri: "/v1/contacts", method: .post, headers: a, body: RouterTests.body(
                #"{"channel": "\#(channel)", "address": "77", "attributes": {"plan": "gold"}, "tags": ["vip"]}"#)) { #expect($0.status == .created) }
            for (from, id) in [("77", "m1"), ("78", "m2")] {
                try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "\#(from)", "text": "hi", "id": "\#(id)", "name": "Caio"}"#)) { #expect($0.status == .accepted) }
            }
            try await rig.engine.drain()
            func reply(_ contact: String) async throws -> String? { try await Self.lastMessage(rig.store, to: contact) }
            #expect(try await reply("77") == "plan=gold vip=true name=Caio")
            #expect(try await reply("78") == "plan=none vip=false name=Caio")

            // The contact who wrote first has a record: an id, the name the channel gave, when they wrote.
            let written = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "78"))
            #expect(written.id.hasPrefix("ct_") && written.name == "Caio" && written.lastSeenAt != nil && !written.optedIn)
            try await client.execute(uri: "/v1/contacts/\(written.id)", method: .get, headers: a) { r in
                let v = RouterTests.json(r)
                #expect(v["conversations_total"] == 1 && v["conversations"][0]["flow"] == "greet")
            }
            let created = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "77"))
            #expect(created.lastSeenAt != nil && created.attributes["plan"] == "gold", "writing keeps what the record held")
            try await client.execute(uri: "/v1/contacts?seen_after=\(created.lastSeenAt!.iso8601)", method: .get, headers: a) { r in
                #expect(RouterTests.json(r)["total"] == 2)
            }
        }
        await rig.store.close()
    }
}

extension ContactsTests {
    static let marking = """
        flow: mark
        trigger: { channel: api }
        start: ask
        blocks:
          ask:
            ask: "Plan?"
            save: plan
            next: mark
          mark:
            contact:
              set: { plan: "{{ plan }}", visits: "{{ (contact.attributes.visits ?? 0) + 1 }}" }
              tag: [customer]
              untag: lead
            next: done
          done:
            end: "ok {{ contact.attributes.visits }} {{ join(contact.tags, ',') }}"
        """

    /// A flow's `contact:` block is committed with its turn: the record, its revision and the filter tables change, so
    /// the API finds the contact by what the flow wrote; a contact deleted meanwhile is written again.
    @Test(arguments: Backend.available)
    func aFlowEditsItsContactsRecordInTheTurn(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.channel(client, rig.adminA)
            try await Self.publish(client, a, "mark", Self.marking)
            try await client.execute(uri: "/v1/contacts", method: .post, headers: a, body: RouterTests.body(
                #"{"channel": "\#(channel)", "address": "77", "attributes": {"visits": 4}, "tags": ["lead", "vip"]}"#)) { #expect($0.status == .created) }
            func say(_ from: String, _ text: String, _ id: String) async throws {
                try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "\#(from)", "text": "\#(text)", "id": "\#(id)"}"#)) { #expect($0.status == .accepted) }
            }
            func addresses(_ query: String) async throws -> [String] {
                try await client.execute(uri: "/v1/contacts?\(query)", method: .get, headers: a) { r in
                    guard case .list(let items) = RouterTests.json(r)["contacts"] else { return ["not a list"] }
                    return items.map { $0["address"].text }.sorted()
                }
            }
            try await say("77", "hi", "m1")
            try await say("78", "hi", "m2")
            try await rig.engine.drain()
            // 78's record goes while its conversation waits for the answer.
            let deleted = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "78"))
            #expect(try await client.execute(uri: "/v1/contacts/\(deleted.id)", method: .delete, headers: a) { $0.status } == .noContent)
            try await say("77", "gold", "m3")
            try await say("78", "silver", "m4")
            try await rig.engine.drain()

            func reply(_ contact: String) async throws -> String? { try await Self.lastMessage(rig.store, to: contact) }
            #expect(try await reply("77") == "ok 5 vip,customer")
            #expect(try await reply("78") == "ok 1 customer")
            let ana = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "77"))
            #expect(ana.attributes == ["plan": "gold", "visits": 5] && ana.tags == ["vip", "customer"])
            #expect(ana.revision == 1, "a flow's edit counts, so an API edit made from an older read is refused")
            let again = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "78"))
            #expect(again.id != deleted.id && again.attributes == ["plan": "silver", "visits": 1] && again.tags == ["customer"])

            #expect(try await addresses("tag=customer&attribute=visits:gte:5") == ["77"])
            #expect(try await addresses("tag=customer") == ["77", "78"])
            #expect(try await addresses("tag=lead").isEmpty, "the removed tag is gone from the filter table too")
            #expect(try await addresses("attribute=plan:eq:silver") == ["78"])
            // The trace shows the edit the turn made.
            let conversation = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "77").first)
            try await client.execute(uri: "/v1/conversations/\(conversation.id)", method: .get, headers: a) { r in
                #expect(String(buffer: r.body).contains(#""untag":["lead"]"#), "\(String(buffer: r.body).prefix(400))")
            }
        }
        await rig.store.close()
    }

    /// The tenant's settings through the API: admins change the opt-out words and reply and the retention period,
    /// supervisors read them, every change is checked and audited, and inbound messages follow them at once.
    @Test(arguments: Backend.available)
    func settingsChooseTheOptOutWordsAndReply(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.channel(client, rig.adminA)
            func settings(_ key: String) async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: "/v1/settings", method: .get, headers: RouterTests.auth(key)) { ($0.status, RouterTests.json($0)) }
            }
            func patch(_ body: String, _ key: String? = nil) async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: "/v1/settings", method: .patch, headers: key.map(RouterTests.auth) ?? a,
                                         body: RouterTests.body(body)) { ($0.status, RouterTests.json($0)) }
            }
            func say(_ from: String, _ text: String, _ id: String) async throws -> String {
                try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "\#(from)", "text": "\#(text)", "id": "\#(id)"}"#)) { RouterTests.json($0)["status"].text }
            }
            let defaults = try await settings(rig.adminA)
            #expect(defaults.0 == .ok && defaults.1["opt_out"]["words"] == ["STOP", "SAIR", "PARAR"])
            #expect(defaults.1["opt_out"]["reply"].text == TenantSettings.defaultOptOutReply && defaults.1["retention"]["messages_days"] == .null)
            #expect(try await settings(rig.agentA).0 == .forbidden)
            #expect(try await patch(#"{"opt_out": {"words": ["x"]}}"#, rig.agentA).0 == .forbidden)
            for bad in [#"{}"#, #"{"opt_out": {}}"#, #"{"opt_out": {"words": []}}"#, #"{"opt_out": {"words": ["!!"]}}"#,
                        #"{"opt_out": {"words": ["a\nb"]}}"#, #"{"opt_out": {"reply": 3}}"#, #"{"opt_out": {"reply": ""}}"#,
                        #"{"retention": {"messages_days": 0}}"#, #"{"retention": {"messages_days": 1.5}}"#, #"{"colour": {"x": 1}}"#,
                        #"{"opt_out": {"language": "pt"}}"#] {
                #expect(try await patch(bad).0 == .badRequest, "refused: \(bad)")
            }
            let changed = try await patch(#"{"opt_out": {"words": ["Cancelar", "não quero"], "reply": null}, "retention": {"messages_days": 90}}"#)
            #expect(changed.0 == .ok && changed.1["opt_out"]["words"] == ["Cancelar", "não quero"] && changed.1["opt_out"]["reply"] == .null)
            #expect(try await settings(rig.adminA).1 == changed.1)
            #expect(try await settings(rig.adminB).1 == defaults.1, "another tenant's settings are its own")
            // Only what is named changes.
            #expect(try await patch(#"{"retention": {"messages_days": null}}"#).1["opt_out"]["words"] == ["Cancelar", "não quero"])

            #expect(try await say("60", "NAO QUERO!", "m1") == "opted_out")
            #expect(try await say("61", "stop", "m2") == "unrouted", "no longer one of this tenant's words")
            try await rig.engine.drain()
            #expect(try await rig.store.contact(tenant: "a", channel: channel, address: "60")?.optedOutAt != nil)
            #expect(try await rig.store.deliveries(tenant: "a", state: nil).isEmpty, "no reply when it is null")
            try await client.execute(uri: "/v1/contacts?opted_in=false&q=60", method: .get, headers: a) { r in
                #expect(RouterTests.json(r)["contacts"][0]["opted_out_at"] != .null, "\(String(buffer: r.body).prefix(300))")
            }
            let audited = try await rig.store.auditLog(tenant: "a").filter { $0.action == "settings.update" }
            #expect(audited.count == 2)
            #expect(try await rig.store.auditLog(tenant: "b").isEmpty)
        }
        await rig.store.close()
    }

    /// Segments save a filter under a name and evaluate it each time: the count and the contacts follow the records.
    @Test(arguments: Backend.available)
    func segmentsAreSavedFiltersEvaluatedWhenUsed(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.channel(client, rig.adminA)
            func call(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, _ key: String? = nil) async throws -> (HTTPResponse.Status, Value) {
                try await client.execute(uri: uri, method: method, headers: key.map(RouterTests.auth) ?? a, body: body.map(RouterTests.body)) {
                    ($0.status, RouterTests.json($0))
                }
            }
            var ids: [String: String] = [:]
            for (address, extra) in [("1", #""tags": ["vip"], "attributes": {"plan": "gold"}"#), ("2", #""tags": ["vip"], "attributes": {"plan": "silver"}"#),
                                     ("3", #""attributes": {"plan": "gold"}"#)] {
                ids[address] = try await call(.post, "/v1/contacts", #"{"channel": "\#(channel)", "address": "\#(address)", \#(extra)}"#).1["id"].text
            }
            let created = try await call(.post, "/v1/segments", #"{"name": "gold vip", "filter": {"tag": "vip", "attribute": ["plan:eq:gold"]}}"#)
            #expect(created.0 == .created && created.1["filter"] == ["tag": ["vip"], "attribute": ["plan:eq:gold"]])
            let id = created.1["id"].text
            func members() async throws -> (count: Value, addresses: [String]) {
                let one = try await call(.get, "/v1/segments/\(id)")
                let page = try await call(.get, "/v1/segments/\(id)/contacts")
                guard case .list(let items) = page.1["contacts"] else { return (one.1["count"], ["not a list"]) }
                return (one.1["count"], items.map { $0["address"].text }.sorted())
            }
            #expect(try await members() == (1, ["1"]))
            // Evaluated when used: a contact that comes to match is in it.
            #expect(try await call(.patch, "/v1/contacts/\(ids["2"]!)", #"{"attributes": {"plan": "gold"}}"#).0 == .ok)
            #expect(try await members() == (2, ["1", "2"]))

            #expect(try await call(.post, "/v1/segments", #"{"name": "gold vip", "filter": {}}"#).1["code"] == "name_taken")
            for bad in [#"{"name": "x", "filter": {"tag": "no spaces!"}}"#, #"{"name": "x", "filter": {"colour": "red"}}"#,
                        #"{"name": "x", "filter": {"opted_in": "yes"}}"#, #"{"name": "x", "filter": {"attribute": ["plan:between:1"]}}"#,
                        #"{"name": "x", "filter": "vip"}"#, #"{"name": "x"}"#, #"{"name": "x", "filter": {}, "colour": 1}"#,
                        #"{"name": "", "filter": {}}"#, #"{"name": "x", "filter": {"seen_after": "yesterday"}}"#] {
                #expect(try await call(.post, "/v1/segments", bad).0 == .badRequest, "refused: \(bad)")
            }
            #expect(try await call(.post, "/v1/segments", #"{"name": "x", "filter": {}}"#, rig.agentA).0 == .forbidden)
            #expect(try await call(.get, "/v1/segments", nil, rig.agentA).1["total"] == 1)
            let everyone = try await call(.post, "/v1/segments", #"{"name": "everyone", "filter": {}}"#)
            #expect(try await call(.get, "/v1/segments/\(everyone.1["id"].text)").1["count"] == 3)
            #expect(try await call(.patch, "/v1/segments/\(everyone.1["id"].text)", #"{"name": "gold vip"}"#).1["code"] == "name_taken")
            #expect(try await call(.patch, "/v1/segments/\(id)", #"{}"#).0 == .badRequest)
            let renamed = try await call(.patch, "/v1/segments/\(id)", #"{"name": "vips", "filter": {"tag": ["vip"]}}"#)
            #expect(renamed.0 == .ok && renamed.1["name"] == "vips")
            #expect(try await members() == (2, ["1", "2"]))
            #expect(try await call(.get, "/v1/segments/\(id)", nil, rig.adminB).0 == .notFound, "another tenant's segment does not exist for b")
            #expect(try await call(.delete, "/v1/segments/\(id)", nil, rig.agentA).0 == .forbidden)
            #expect(try await call(.delete, "/v1/segments/\(id)").0 == .noContent)
            #expect(try await call(.get, "/v1/segments/\(id)").0 == .notFound)
            let actions = try await rig.store.auditLog(tenant: "a").map(\.action).filter { $0.hasPrefix("segment.") }
            #expect(actions.sorted() == ["segment.create", "segment.create", "segment.delete", "segment.update"])
        }
        await rig.store.close()
    }

    static func importCSV(_ client: some TestClientProtocol, _ key: String, channel: String, _ csv: String) async throws -> (HTTPResponse.Status, Value) {
        var headers = RouterTests.auth(key)
        headers[.contentType] = "text/csv"
        return try await client.execute(uri: "/v1/contacts/csv?channel=\(channel)", method: .post, headers: headers, body: RouterTests.body(csv)) {
            ($0.status, RouterTests.json($0))
        }
    }

    /// A CSV is imported row by row (a row with a mistake not at all, reported by line), exported with typed
    /// columns, and imported again elsewhere to the same contacts.
    @Test(arguments: Backend.available)
    func contactsComeInAndGoOutAsCSV(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.channel(client, rig.adminA), second = try await Self.channel(client, rig.adminA)
            let csv = "\u{FEFF}address,name,tags,score:number,vip:boolean,birthday:date,langs:list,city,opted_out\r\n"
                + "5511000000001,\"Ana, the first\",vip;lead,42,yes,1990-05-01,pt;en,São Paulo,false\r\n"
                + "5511000000002,Bia,,x7,no,,,,\r\n"
                + "5511000000003,\"Caio \"\"C\"\"\",,7,no,2001-13-40,,Rio,\r\n"
                + "5511000000001,Dup,,,,,,,\r\n"
                + "5511000000004,Duda,bad tag,,,,,,\r\n"
                + "5511000000005,Eva\r\n"
                + "\"5511000000006\",=cmd(),,,,,,\"two\nlines\",\r\n"
            let (status, report) = try await Self.importCSV(client, rig.adminA, channel: channel, csv)
            #expect(status == .ok && report["created"] == 2 && report["updated"] == 0 && report["failed"] == 5, "\(report)")
            guard case .list(let errors) = report["errors"] else { Issue.record("no errors listed"); return }
            #expect(errors.map { $0["line"] } == [3, 4, 5, 6, 7], "\(errors)")
            #expect(errors[0]["message"].text.contains("score") && errors[2]["message"].text.contains("line 2"))
            let ana = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "5511000000001"))
            #expect(ana.name == "Ana, the first" && ana.tags == ["vip", "lead"] && !ana.optedIn)
            #expect(ana.attributes == ["score": 42, "vip": true, "birthday": "1990-05-01", "langs": ["pt", "en"], "city": "São Paulo"])
            #expect(try await rig.store.contact(tenant: "a", channel: channel, address: "5511000000003") == nil, "no partial rows")
            let fabio = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "5511000000006"))
            #expect(fabio.attributes["city"] == "two\nlines" && fabio.name == "=cmd()")

            // Imported again: merged into the contacts there.
            let (_, again) = try await Self.importCSV(client, rig.adminA, channel: channel, "address,score:number,tags\n5511000000001,50,customer\n")
            #expect(again["updated"] == 1 && again["created"] == 0)
            let merged = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "5511000000001"))
            #expect(merged.attributes["score"] == 50 && merged.attributes["vip"] == true && merged.tags == ["vip", "lead", "customer"])

            // Exported with typed columns (and a formula kept from running), imported into another channel unchanged.
            let exported = try await client.execute(uri: "/v1/contacts/csv?channel=\(channel)", method: .get, headers: a) { r in
                #expect(r.status == .ok && r.headers[.contentType]?.hasPrefix("text/csv") == true)
                return String(buffer: r.body)
            }
            guard case .success(let rows) = CSV.parse(exported) else { Issue.record("the export is not CSV"); return }
            #expect(rows[0].fields == ["id", "address", "name", "phone", "tags", "consent_source", "consent_at", "opted_out",
                                       "birthday:date", "city", "langs:list", "score:number", "vip:boolean"])
            // Contacts imported together were created at one instant: find each row by its address.
            #expect(rows.count == 3 && rows.first { $0.fields[1] == "5511000000006" }?.fields[2] == "'=cmd()")
            let (_, copied) = try await Self.importCSV(client, rig.adminA, channel: second, exported)
            #expect(copied["created"] == 2 && copied["failed"] == 0, "\(copied)")
            for address in ["5511000000001", "5511000000006"] {
                let original = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: address))
                let copy = try #require(try await rig.store.contact(tenant: "a", channel: second, address: address))
                #expect(copy.attributes == original.attributes && copy.tags == original.tags && copy.name == original.name)
            }

            // What cannot be read is refused whole, with the reason.
            for (bad, why) in [("address,name\n1,\"open\n", "never closed"), ("address,x:money\n1,2\n", "type"), ("name\nAna\n", "address column"),
                               ("address,\"a\"b\n", "closing quote"), ("", "empty")] {
                let (s, p) = try await Self.importCSV(client, rig.adminA, channel: channel, bad)
                #expect(s == .badRequest && p["detail"].text.contains(why), "\(bad.debugDescription): \(p)")
            }
            #expect(try await Self.importCSV(client, rig.agentA, channel: channel, "address\n1\n").0 == .forbidden)
            #expect(try await Self.importCSV(client, rig.adminB, channel: channel, "address\n1\n").0 == .notFound, "another tenant's channel")
        }
        await rig.store.close()
    }

    /// A data subject's requests: everything held about a contact as JSON, then erased, leaving only the audit entry.
    @Test(arguments: Backend.available)
    func aContactsDataIsExportedAndErased(_ backend: Backend) async throws {
        let rig = try await RouterTests.Rig(backend: backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            try await client.execute(uri: "/v1/flows/hello", method: .put, headers: a, body: RouterTests.body(RouterTests.flow)) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/flows/hello/publish", method: .post, headers: a) { #expect($0.status == .created) }
            let channel = try await Self.channel(client, rig.adminA)
            for (i, text) in ["hi", "Ana Lima"].enumerated() {
                try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                         body: RouterTests.body(#"{"from": "700", "text": "\#(text)", "id": "m\#(i)"}"#)) { #expect($0.status == .accepted) }
                try await rig.engine.drain()
            }
            try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                     body: RouterTests.body(#"{"from": "701", "text": "hi", "id": "other"}"#)) { #expect($0.status == .accepted) }
            try await rig.engine.drain()
            let contact = try #require(try await rig.store.contact(tenant: "a", channel: channel, address: "700"))
            let conversation = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "700").first?.id)

            try await client.execute(uri: "/v1/contacts/\(contact.id)/data", method: .get, headers: RouterTests.auth(rig.agentA)) { #expect($0.status == .forbidden) }
            let data = try await client.execute(uri: "/v1/contacts/\(contact.id)/data", method: .get, headers: a) { RouterTests.json($0) }
            #expect(data["contact"]["address"] == "700" && data["conversations"][0]["id"].text == conversation)
            #expect(data["conversations"][0]["variables"]["name"] == "Ana Lima")
            guard case .list(let messages) = data["conversations"][0]["messages"] else { Issue.record("no messages"); return }
            #expect(messages.map { $0["text"].text }.starts(with: ["hi", "Name?", "Ana Lima"]))

            try await client.execute(uri: "/v1/contacts/\(contact.id)/erase", method: .post, headers: RouterTests.auth(rig.adminB)) { #expect($0.status == .notFound) }
            let erased = try await client.execute(uri: "/v1/contacts/\(contact.id)/erase", method: .post, headers: a) { r in
                #expect(r.status == .ok)
                return RouterTests.json(r)
            }
            #expect(erased["conversations"] == 1 && erased["messages"] == .number(Double(messages.count)))
            #expect(try await rig.store.contact(id: contact.id, tenant: "a") == nil)
            #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: "700").isEmpty)
            #expect(try await rig.store.messages(conversation: conversation, tenant: "a").isEmpty)
            #expect(try await rig.store.traces(conversation: conversation, tenant: "a").isEmpty)
            try await client.execute(uri: "/v1/inbox", method: .get, headers: a) { r in
                #expect(!String(buffer: r.body).contains(conversation), "the handed-off conversation left the inbox with the rest")
            }
            #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: "701").count == 1, "another contact keeps theirs")
            #expect(try await client.execute(uri: "/v1/contacts/\(contact.id)/erase", method: .post, headers: a) { $0.status } == .notFound)
        }
        let actions = try await rig.store.auditLog(tenant: "a").map(\.action)
        #expect(actions.contains("contact.export") && actions.contains("contact.erase"))
        await rig.store.close()
    }
}
