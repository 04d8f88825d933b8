import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// A campaign through real `flowline serve` processes on PostgreSQL: the one running it is killed (SIGKILL) in the
/// middle of a batch, another takes over once the lease runs out, and every contact gets the campaign's template
/// from exactly one conversation, as the fake Graph API counts.
@Suite struct CampaignProcessTests {
    static let flow = """
        flow: offer
        trigger: { channel: whatsapp }
        whatsapp_template: { name: december_offer, language: pt_BR }
        start: hi
        blocks:
          hi:
            text: "Oferta de dezembro"
        """

    @Test func aCampaignKilledMidwayReachesEveryContactOnce() async throws {
        guard FileManager.default.isExecutableFile(atPath: ServeProcess.binary) else {
            Issue.record("build flowline first: \(ServeProcess.binary) is missing")
            return
        }
        let dir = try ProcessTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let database = try await SQLStore.createPostgresDatabase(nextTo: try Peer.value("FLOWLINE_TEST_POSTGRES_URL"), prefix: "campaign_")
        let secret = SecretBox.generateKey()
        let graph = FakeGraphAPI(token: "EAAG-campaign-token")
        // Nothing the first process sends gets through, so the kill cannot land between a send and its done mark (a
        // repeat the outbox allows, under the same key): what is counted is the campaign's own exactly-once.
        graph.mode.withLock { $0 = .failing }
        let contacts = (0..<30).map { String(format: "55119888800%02d", $0) }
        try await graph.app.test(.live) { graphPeer in
            // A short campaign lease, so the second server goes on soon after the kill. The delivery lease is longer:
            // a send gets half of it, and a Graph fake slowed by the rest of the suite must not be timed out and sent
            // to again (a repeat the outbox allows, under the same key, which is not what this test counts).
            let leases = ["FLOWLINE_CAMPAIGN_LEASE": "2", "FLOWLINE_DELIVERY_LEASE": "8"]
            let first = try await ServeProcess(database: database, log: dir + "/serve.log", secretKey: secret, flows: dir + "/flows",
                                               environment: leases.merging(["FLOWLINE_FAILPOINTS": "campaign.after-start@12"]) { a, _ in a })
            defer { if first.isRunning { first.kill() } }
            #expect(try await first.api.call(.PUT, "/v1/flows/offer", Self.flow, headers: [("Content-Type", "application/yaml")]).status == 201)
            #expect(try await first.api.call(.POST, "/v1/flows/offer/publish").status == 201)
            let channel = try await first.api.call(.POST, "/v1/channels", Value.map([
                "kind": "whatsapp", "name": "wa", "phone_number_id": .string(graph.phoneNumberID), "verify_token": "verify-campaign",
                "app_secret": "app-secret-campaign", "access_token": "EAAG-campaign-token", "graph_url": .string("http://127.0.0.1:\(graphPeer.port!)"),
            ]).jsonText)
            #expect(channel.status == 201)
            let channelID = channel.body["id"].text
            for address in contacts {
                let made = try await first.api.call(.POST, "/v1/contacts", Value.map(["channel": .string(channelID), "address": .string(address)]).jsonText)
                #expect(made.status == 201, "\(made.body)")
            }
            let campaign = try await first.api.call(.POST, "/v1/campaigns", Value.map([
                "name": "december", "flow": "offer", "channel": .string(channelID), "filter": .map([:]), "rate": 20,
            ]).jsonText)
            #expect(campaign.status == 201, "\(campaign.body)")
            let id = campaign.body["id"].text

            _ = try await Peers.eventually("the first server dies at its twelfth start", seconds: 30) { first.isRunning ? nil : true }
            #expect(first.wasKilled, "ended by SIGKILL")
            #expect(first.output.contains("failpoint campaign.after-start"), "its log names the failpoint")

            graph.mode.withLock { $0 = .normal }
            let second = try await ServeProcess(database: database, log: dir + "/serve.log", secretKey: secret, flows: dir + "/flows", environment: leases)
            defer { if second.isRunning { second.kill() } }
            let view = try await Peers.eventually("the campaign finishes and every template is sent", seconds: 90) { () -> Value? in
                let v = try await second.api.call(.GET, "/v1/campaigns/\(id)").body
                guard v["status"] == "finished", graph.messages.count >= contacts.count else { return nil }
                let metrics = try await second.api.call(.GET, "/metrics", auth: false).body.text
                return metrics.contains("flowline_outbox_pending 0") ? v : nil
            }
            #expect(view["counts"]["total"] == 30 && view["counts"]["started"] == 30 && view["counts"]["queued"] == 0, "\(view["counts"])")
            #expect(view["counts"]["sent"] == 30)

            // Each contact got the template of one conversation, none left out: one send key (conversation:effect) per
            // contact. A send may arrive twice under its one key, and only so: the outbox's at-least-once when a call
            // outlives its timeout on a loaded machine (docs/engine.md, "Exactly once, precisely"), never a second start.
            let sent = graph.messages
            #expect(sent.allSatisfy { $0["type"] == "template" && $0["template"]["name"] == "december_offer" }, "\(sent.first ?? .null)")
            let keys = Dictionary(grouping: sent, by: { $0["to"].text }).mapValues { Set($0.map(\.["biz_opaque_callback_data"].text)) }
            #expect(keys.keys.sorted() == contacts, "every contact reached")
            let twice = keys.filter { $0.value.count != 1 }
            #expect(twice.isEmpty, "one conversation's send per contact: \(twice)")
            // And the campaign made one conversation per contact.
            let store = try await SQLStore.open(database)
            for address in contacts {
                #expect(try await store.conversations(tenant: "demo", status: nil, contact: address).count == 1, "\(address)")
            }
            await store.close()
            #expect(!second.output.contains("failpoint"), "the restarted server has none armed")
        }
    }

    /// Two `flowline serve` processes on one PostgreSQL poll the same minutely schedule: its next occurrence makes
    /// one campaign, and each of the fixed list's contacts gets one conversation.
    @Test func twoProcessesFireAScheduleOnce() async throws {
        guard FileManager.default.isExecutableFile(atPath: ServeProcess.binary) else {
            Issue.record("build flowline first: \(ServeProcess.binary) is missing")
            return
        }
        let dir = try ProcessTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let database = try await SQLStore.createPostgresDatabase(nextTo: try Peer.value("FLOWLINE_TEST_POSTGRES_URL"), prefix: "schedule_")
        let secret = SecretBox.generateKey()
        let contacts = ["5511977770001", "5511977770002", "5511977770003"]
        let flow = """
            flow: minutely
            trigger:
              channel: api
              schedule: { cron: "* * * * *", timezone: UTC, contacts: [\(contacts.map { "\"\($0)\"" }.joined(separator: ", "))] }
            start: hi
            blocks:
              hi:
                text: "Tick"
            """
        let first = try await ServeProcess(database: database, log: dir + "/serve.log", secretKey: secret, flows: dir + "/flows")
        defer { if first.isRunning { first.kill() } }
        let second = try await ServeProcess(database: database, log: dir + "/serve.log", secretKey: secret, flows: dir + "/flows")
        defer { if second.isRunning { second.kill() } }
        #expect(try await first.api.call(.POST, "/v1/channels", #"{"kind": "api", "name": "web"}"#).status == 201)
        #expect(try await first.api.call(.PUT, "/v1/flows/minutely", flow, headers: [("Content-Type", "application/yaml")]).status == 201)
        #expect(try await first.api.call(.POST, "/v1/flows/minutely/publish").status == 201)
        let due = try await second.api.call(.GET, "/v1/flows/minutely/schedule").body["next_at"].text
        #expect(due.hasSuffix(":00Z"), "\(due)")

        // Within a minute and a bit the occurrence comes; both processes see it due.
        let campaign = try await Peers.eventually("the occurrence's campaign starts its three contacts", seconds: 90) { () -> Value? in
            let s = try await second.api.call(.GET, "/v1/flows/minutely/schedule").body
            guard s["last_occurrence"].text == due, case .string(let id) = s["last_campaign"] else { return nil }
            let c = try await first.api.call(.GET, "/v1/campaigns/\(id)").body
            return c["counts"]["started"] == 3 ? c : nil
        }
        #expect(campaign["name"].text == "minutely at \(due)")
        let store = try await SQLStore.open(database)
        // One campaign for that occurrence, whichever process fired it, and one conversation per contact from it.
        let made = try await store.campaigns(tenant: "demo", limit: 100, offset: 0).items.filter { $0.name == "minutely at \(due)" }
        #expect(made.count == 1)
        for address in contacts {
            let conversations = try await store.conversations(tenant: "demo", status: nil, contact: address)
            #expect(conversations.count >= 1 && conversations.count <= 2, "\(address): one per occurrence passed")
        }
        let reached = try await store.campaignCounts(id: campaign["id"].text, tenant: "demo")
        #expect(reached.total == 3 && reached.started == 3)
        await store.close()
    }
}
