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

/// `/v1/campaigns`: a flow sent to a segment at a rate, paused, resumed and cancelled, each contact reached once.
@Suite struct CampaignTests {
    static let news = """
        flow: news
        trigger: { channel: api }
        variables: { offer: string }
        start: hello
        blocks:
          hello:
            ask: "Hi {{ contact.name ?? 'there' }}: {{ offer }}. Interested?"
            save: answer
            next: thanks
          thanks:
            text: "Noted: {{ answer }}"
        """

    static func contact(_ client: some TestClientProtocol, _ a: HTTPFields, _ channel: String, _ address: String, tags: [String]) async throws -> String {
        let tagList = tags.map { "\"\($0)\"" }.joined(separator: ", ")
        return try await client.execute(uri: "/v1/contacts", method: .post, headers: a, body: RouterTests.body(
            #"{"channel": "\#(channel)", "address": "\#(address)", "name": "P\#(address)", "tags": [\#(tagList)]}"#)) {
            #expect($0.status == .created)
            return RouterTests.json($0)["id"].text
        }
    }

    static func campaign(_ client: some TestClientProtocol, _ a: HTTPFields, _ id: String) async throws -> Value {
        try await client.execute(uri: "/v1/campaigns/\(id)", method: .get, headers: a) { r in
            #expect(r.status == .ok)
            return RouterTests.json(r)
        }
    }

    static func post(_ client: some TestClientProtocol, _ a: HTTPFields, _ uri: String, _ body: String = "{}") async throws -> (status: HTTPResponse.Status, body: Value) {
        try await client.execute(uri: uri, method: .post, headers: a, body: RouterTests.body(body)) { ($0.status, RouterTests.json($0)) }
    }

    /// A rig on a clock the test moves (`advance`).
    static func rig(_ backend: Backend) async throws -> (RouterTests.Rig, @Sendable (Int64) -> Void) {
        let time = Mutex(Timestamp(milliseconds: 1_800_000_000_000))
        let rig = try await RouterTests.Rig(backend: backend, clock: { time.withLock { $0 } })
        return (rig, { seconds in time.withLock { $0 = $0.adding(seconds: seconds) } })
    }

    /// An api channel and the flows the tests send: `news`, `remind` (to make a contact busy) and `notice`, which
    /// ends after one message. Returns the channel's id.
    static func setUp(_ client: some TestClientProtocol, _ rig: RouterTests.Rig) async throws -> String {
        let channel = try await ContactsTests.channel(client, rig.adminA)
        try await StartTests.publish(client, rig.adminA, "news", Self.news)
        try await StartTests.publish(client, rig.adminA, "remind", StartTests.reminder)
        try await StartTests.publish(client, rig.adminA, "notice", "flow: notice\ntrigger: { channel: api }\nstart: hi\nblocks:\n  hi:\n    text: \"Notice\"\n")
        return channel
    }

    @Test(arguments: Backend.available)
    func aCampaignReachesItsSegmentAtItsRateOnce(_ backend: Backend) async throws {
        let (rig, advance) = try await Self.rig(backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.setUp(client, rig)
            var vips: [String: String] = [:]
            for n in 0..<10 { vips["70\(n)"] = try await Self.contact(client, a, channel, "70\(n)", tags: ["vip"]) }
            _ = try await Self.contact(client, a, channel, "790", tags: [])
            // One opted out, one already in a conversation when the campaign comes to them.
            #expect(try await client.execute(uri: "/v1/contacts/\(vips["701"]!)", method: .patch, headers: a,
                                             body: RouterTests.body(#"{"opted_out": true}"#)) { $0.status } == .ok)
            #expect(try await Self.post(client, a, "/v1/flows/remind/start",
                                        #"{"contact": {"id": "\#(vips["702"]!)"}, "variables": {"appointment": "9:00"}}"#).status == .created)
            let segment = try await Self.post(client, a, "/v1/segments", #"{"name": "vips", "filter": {"tag": "vip"}}"#).body["id"].text

            // What a campaign must be: checked before anything is stored.
            for (body, status) in [
                (#"{"name": "x", "flow": "news", "channel": "\#(channel)"}"#, HTTPResponse.Status.badRequest),
                (#"{"name": "x", "flow": "news", "channel": "\#(channel)", "segment": "\#(segment)", "filter": {}}"#, .badRequest),
                (#"{"name": "x", "flow": "news", "channel": "\#(channel)", "segment": "\#(segment)", "rate": 0}"#, .badRequest),
                (#"{"name": "x", "flow": "news", "channel": "\#(channel)", "segment": "\#(segment)", "if_busy": "wait"}"#, .badRequest),
                (#"{"name": "x", "flow": "news", "channel": "\#(channel)", "segment": "\#(segment)", "variables": {"nope": 1}}"#, .badRequest),
                (#"{"name": "x", "flow": "news", "channel": "\#(channel)", "segment": "\#(segment)", "surprise": 1}"#, .badRequest),
                (#"{"name": "x", "flow": "news", "channel": "\#(channel)", "segment": "sg_none"}"#, .notFound),
                (#"{"name": "x", "flow": "gone", "channel": "\#(channel)", "segment": "\#(segment)"}"#, .notFound),
                (#"{"name": "x", "flow": "news", "channel": "ch_none", "segment": "\#(segment)"}"#, .notFound),
            ] {
                let r = try await Self.post(client, a, "/v1/campaigns", body)
                #expect(r.status == status, "\(body): \(r.body)")
            }
            #expect(try await Self.post(client, RouterTests.auth(rig.agentA), "/v1/campaigns",
                                        #"{"name": "x", "flow": "news", "channel": "\#(channel)", "segment": "\#(segment)"}"#).status == .forbidden)

            let made = try await Self.post(client, a, "/v1/campaigns", #"""
                {"name": "December offer", "flow": "news", "channel": "\#(channel)", "segment": "\#(segment)",
                 "variables": {"offer": "20% off"}, "rate": 2}
                """#)
            #expect(made.status == .created && made.body["status"] == "scheduled" && made.body["rate"] == 2, "\(made.body)")
            #expect(made.body["filter"] == ["tag": ["vip"]])
            let id = made.body["id"].text
            // Another tenant does not see it.
            try await client.execute(uri: "/v1/campaigns/\(id)", method: .get, headers: RouterTests.auth(rig.adminB)) { #expect($0.status == .notFound) }

            // It begins: its ten contacts are chosen (the opted-out one counted, not queued), and one second's worth
            // of its rate starts at once; then two a second, never more.
            try await rig.engine.drain()
            var view = try await Self.campaign(client, a, id)
            #expect(view["status"] == "running" && view["counts"]["total"] == 10 && view["counts"]["skipped"]["opted_out"] == 1)
            // (702, busy, is skipped when its turn comes, which may be now: ids order the queue.)
            #expect(view["counts"]["started"] == 1, "\(view["counts"])")
            let busyYet = view["counts"]["skipped"]["in_conversation"] == .null ? 0 : 1
            #expect(view["counts"]["queued"] == .number(Double(8 - busyYet)))
            advance(1)
            try await rig.engine.drain()
            #expect(try await Self.campaign(client, a, id)["counts"]["started"] == 3)
            try await rig.engine.drain()
            #expect(try await Self.campaign(client, a, id)["counts"]["started"] == 3, "nothing more until the bucket refills")

            // Paused: nothing starts however long it waits; resumed, it goes on at its rate.
            let paused = try await Self.post(client, a, "/v1/campaigns/\(id)/pause")
            #expect(paused.status == .ok && paused.body["status"] == "paused")
            #expect(try await Self.post(client, a, "/v1/campaigns/\(id)/pause").body["code"] == "campaign_paused")
            advance(60)
            try await rig.engine.drain()
            #expect(try await Self.campaign(client, a, id)["counts"]["started"] == 3)
            #expect(try await Self.post(client, a, "/v1/campaigns/\(id)/resume").body["status"] == "running")
            try await rig.engine.drain()
            #expect(try await Self.campaign(client, a, id)["counts"]["started"] == 3, "the pause did not save up tokens")
            for _ in 0..<6 {
                advance(1)
                try await rig.engine.drain()
            }
            view = try await Self.campaign(client, a, id)
            #expect(view["status"] == "finished" && view["finished_at"] != .null, "\(view)")
            #expect(view["counts"]["started"] == 8 && view["counts"]["queued"] == 0)
            #expect(view["counts"]["skipped"] == ["opted_out": 1, "in_conversation": 1], "\(view["counts"])")
            #expect(view["counts"]["sent"] == 8)

            // Each contact has exactly one conversation of the campaign's flow, with its variables; 790 (not a vip) none.
            for address in vips.keys.sorted() {
                let news = try await rig.store.conversations(tenant: "a", status: nil, contact: address).filter { $0.flow == "news" }
                #expect(news.count == (["701", "702"].contains(address) ? 0 : 1), "\(address): \(news.count)")
                if let c = news.first {
                    #expect(try await rig.store.messages(conversation: c.id, tenant: "a").first?.text == "Hi P\(address): 20% off. Interested?")
                }
            }
            #expect(try await rig.store.conversations(tenant: "a", status: nil, contact: "790").isEmpty)

            // A reply continues the campaign's conversation, and counts.
            #expect(try await client.execute(uri: "/v1/channels/\(channel)/inbound", method: .post, headers: a,
                                             body: RouterTests.body(#"{"from": "703", "text": "yes please", "id": "r-703"}"#)) { $0.status } == .accepted)
            try await rig.engine.drain()
            #expect(try await ContactsTests.lastMessage(rig.store, to: "703") == "Noted: yes please")
            view = try await Self.campaign(client, a, id)
            #expect(view["counts"]["replied"] == 1)
            #expect(try await Self.post(client, a, "/v1/campaigns/\(id)/cancel").body["code"] == "campaign_finished")
            try await client.execute(uri: "/v1/campaigns", method: .get, headers: a) { r in
                let list = RouterTests.json(r)
                #expect(list["total"] == 1 && list["campaigns"][0]["id"].text == id && list["campaigns"][0]["counts"]["started"] == 8)
            }
        }
        let actions = try await rig.store.auditLog(tenant: "a").map(\.action)
        #expect(actions.filter { $0.hasPrefix("campaign.") }.sorted() == ["campaign.create", "campaign.pause", "campaign.resume"])
        await rig.store.close()
    }

    /// A batch redone after its worker died (leased, some contacts started, nothing recorded) starts only the others;
    /// a cancelled campaign starts no one more; `if_busy: queue` tries a busy contact again once they are free, and
    /// `daily_limit` holds starts on the channel to a rolling 24 hours.
    @Test(arguments: Backend.available)
    func aRedoneBatchStartsNobodyTwice(_ backend: Backend) async throws {
        let (rig, advance) = try await Self.rig(backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await Self.setUp(client, rig)
            for n in 0..<20 { _ = try await Self.contact(client, a, channel, "8\(String(format: "%02d", n))", tags: ["all"]) }
            let made = try await Self.post(client, a, "/v1/campaigns", #"""
                {"name": "all", "flow": "notice", "channel": "\#(channel)", "filter": {"tag": "all"}, "rate": 10}
                """#)
            #expect(made.status == .created, "\(made.body)")
            let id = made.body["id"].text

            // A worker takes the first batch and does nothing with it; the next one starts three of its ten and dies.
            let batch = try #require(try await rig.store.claimCampaign(now: rig.engine.now, lease: 30, maxBatch: 10))
            #expect(batch.targets.count == 1, "a beginning campaign has a token's worth, not a burst")
            advance(1)
            try await rig.store.finishCampaignBatch(batch, outcomes: [.done], started: 0, failure: nil, now: rig.engine.now)
            let second = try #require(try await rig.store.claimCampaign(now: rig.engine.now, lease: 30, maxBatch: 10))
            #expect(second.targets.count == 10, "a second at 10/s")
            let flow = try #require(try await rig.store.publishedFlows(tenant: "a").first { $0.name == "notice" })
            func start(_ t: CampaignTarget) async throws -> StartOutcome {
                try await rig.store.start(ConversationStart(
                    tenant: "a", channel: channel, channelKind: "api", contact: t.address, flow: flow, variables: [:],
                    idempotencyKey: nil, requestDigest: "", newConversationID: UUID().uuidString.lowercased(), newContactID: t.contact,
                    answer: .null, campaign: CampaignMark(campaign: id, contact: t.contact)), now: rig.engine.now)
            }
            for t in second.targets.prefix(3) {
                let started = try await start(t)
                guard case .started = started else { Issue.record("\(started)"); continue }
            }
            // Leased: another worker finds nothing to do until the lease runs out; then it redoes the batch (the other
            // seven, the three started are not queued) and three more, and their conversations run to their end.
            #expect(try await rig.engine.runCampaigns() == 0)
            advance(31)
            #expect(try await rig.engine.runCampaigns() == 10)
            try await rig.engine.drain()
            // The first worker was only slow: what it goes on to start was started meanwhile, and is not again (the
            // conversations ended, so only the row's mark tells).
            for t in second.targets.suffix(7) {
                #expect(try await start(t) == .notQueued)
            }
            try await rig.engine.drain()
            for n in 0..<20 {
                let address = "8\(String(format: "%02d", n))"
                let count = try await rig.store.conversations(tenant: "a", status: nil, contact: address).count
                #expect(count <= 1, "\(address) was started \(count) times")
            }
            var view = try await Self.campaign(client, a, id)
            #expect(view["counts"]["started"] == 13, "the dead worker's 3, and the redone batch's 10 (its other 7, 3 more): \(view["counts"])")

            // Cancelled: the rest are skipped as cancelled, and stay unreached.
            let cancelled = try await Self.post(client, a, "/v1/campaigns/\(id)/cancel")
            #expect(cancelled.status == .ok && cancelled.body["status"] == "cancelled")
            advance(60)
            try await rig.engine.drain()
            view = try await Self.campaign(client, a, id)
            #expect(view["counts"]["started"] == 13 && view["counts"]["skipped"]["cancelled"] == 7 && view["counts"]["queued"] == 0)
            #expect(try await Self.post(client, a, "/v1/campaigns/\(id)/resume").body["code"] == "campaign_cancelled")

            // if_busy: queue, daily_limit: 3 — the contacts of a second campaign on the channel.
            for n in 0..<4 { _ = try await Self.contact(client, a, channel, "90\(n)", tags: ["later"]) }
            #expect(try await Self.post(client, a, "/v1/flows/remind/start",
                                        #"{"contact": {"channel": "\#(channel)", "address": "900"}, "variables": {"appointment": "9:00"}}"#).status == .created)
            try await rig.engine.drain()
            let queued = try await Self.post(client, a, "/v1/campaigns", #"""
                {"name": "later", "flow": "news", "channel": "\#(channel)", "filter": {"tag": "later"}, "variables": {"offer": "y"},
                 "rate": 100, "if_busy": "queue", "daily_limit": 16}
                """#)
            #expect(queued.status == .created, "\(queued.body)")
            let qid = queued.body["id"].text
            // 13 started on the channel in the last day already: 3 more are allowed, and 900 is busy (kept queued).
            for _ in 0..<3 {
                advance(1)
                try await rig.engine.drain()
            }
            view = try await Self.campaign(client, a, qid)
            #expect(view["counts"]["started"] == 3 && view["counts"]["queued"] == 1 && view["status"] == "running", "\(view["counts"])")
            // 900's conversation ends; a day after the first campaign's starts the limit frees up, and 900 is reached.
            let remind = try #require(try await rig.store.conversations(tenant: "a", status: nil, contact: "900").first { $0.flow == "remind" })
            #expect(try await client.execute(uri: "/v1/conversations/\(remind.id)/cancel", method: .post, headers: a) { $0.status } == .accepted)
            try await rig.engine.drain()
            advance(3600)
            try await rig.engine.drain()
            #expect(try await Self.campaign(client, a, qid)["counts"]["started"] == 3, "the channel's day is still full")
            advance(86_400)
            try await rig.engine.drain()
            view = try await Self.campaign(client, a, qid)
            #expect(view["counts"]["started"] == 4 && view["status"] == "finished", "\(view)")
        }
        await rig.store.close()
    }
}
