import Connectors
import FlowCompiler
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

/// `trigger.schedule`: a flow that starts itself at cron times in a zone, for a segment or a fixed list; each
/// occurrence makes one campaign, once across processes, and downtime is never replayed as a burst.
@Suite struct ScheduleTests {
    // The rigs' clock starts at 2027-01-15T08:00:00Z, a Friday: 05:00 in São Paulo.
    static func morning(_ extra: String = "") -> String {
        """
        flow: morning
        trigger:
          channel: api
          schedule: { cron: "0 9 * * 1-5", timezone: America/Sao_Paulo, segment: parents\(extra) }
        start: hi
        blocks:
          hi:
            text: "Good morning, {{ contact.name ?? 'there' }}"
        """
    }

    static func hourly(_ name: String, missed: String, contacts: [String]) -> String {
        """
        flow: \(name)
        trigger:
          channel: api
          schedule:
            cron: "0 * * * *"
            timezone: UTC
            contacts: [\(contacts.map { "\"\($0)\"" }.joined(separator: ", "))]
            missed: \(missed)
        start: hi
        blocks:
          hi:
            text: "Hourly"
        """
    }

    /// Saves a flow's draft (new or not) and publishes it.
    static func publish(_ client: some TestClientProtocol, _ key: String, _ name: String, _ source: String) async throws {
        try await client.execute(uri: "/v1/flows/\(name)", method: .put, headers: RouterTests.auth(key), body: RouterTests.body(source)) {
            #expect($0.status == .created || $0.status == .ok, "\(String(buffer: $0.body))")
        }
        try await client.execute(uri: "/v1/flows/\(name)/publish", method: .post, headers: RouterTests.auth(key)) { #expect($0.status == .created) }
    }

    /// Drains the engine over a few seconds of the rig's clock, so campaigns' rates let every contact start.
    static func settle(_ rig: RouterTests.Rig, _ advance: @Sendable (Int64) -> Void) async throws {
        for _ in 0..<4 {
            try await rig.engine.drain()
            advance(1)
        }
    }

    static func schedule(_ client: some TestClientProtocol, _ a: HTTPFields, _ flow: String) async throws -> Value {
        try await client.execute(uri: "/v1/flows/\(flow)/schedule", method: .get, headers: a) { r in
            #expect(r.status == .ok, "\(String(buffer: r.body))")
            return RouterTests.json(r)
        }
    }

    static func campaigns(_ client: some TestClientProtocol, _ a: HTTPFields) async throws -> [Value] {
        try await client.execute(uri: "/v1/campaigns?limit=100", method: .get, headers: a) { r in
            guard case .list(let l) = RouterTests.json(r)["campaigns"] else { return [] }
            return l
        }
    }

    /// Conversations per contact address on the tenant.
    static func reached(_ store: SQLStore, tenant: String = "a") async throws -> [String: Int] {
        let (items, _) = try await store.conversations(tenant: tenant, filter: ConversationFilter(), limit: 1000, offset: 0)
        return Dictionary(items.map { ($0.contact, 1) }, uniquingKeysWith: +)
    }

    @Test(arguments: Backend.available)
    func aScheduleStartsItsSegmentAtEachOccurrenceOnce(_ backend: Backend) async throws {
        let (rig, advance) = try await CampaignTests.rig(backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            let channel = try await ContactsTests.channel(client, rig.adminA)
            for n in 0..<3 { _ = try await CampaignTests.contact(client, a, channel, "30\(n)", tags: ["parent"]) }
            _ = try await CampaignTests.contact(client, a, channel, "399", tags: ["staff"])
            #expect(try await CampaignTests.post(client, a, "/v1/segments", #"{"name": "parents", "filter": {"tag": "parent"}}"#).status == .created)
            try await Self.publish(client, rig.adminA, "morning", Self.morning())

            var view = try await Self.schedule(client, a, "morning")
            #expect(view["next_at"] == "2027-01-15T12:00:00Z" && view["timezone"] == "America/Sao_Paulo", "\(view)")
            #expect(view["cron"] == ["0 9 * * 1-5"] && view["segment"] == "parents" && view["missed"] == "run_once")
            // A message matching no keyword does not start it: a reply after the reminder ended is not a new reminder.
            #expect(try await rig.store.publishedFlows(tenant: "a").first { $0.name == "morning" }?.catchAll == false)
            // Another tenant has no such schedule; a flow without one answers 404 too.
            try await client.execute(uri: "/v1/flows/morning/schedule", method: .get, headers: RouterTests.auth(rig.adminB)) { #expect($0.status == .notFound) }

            // Not yet nine in São Paulo: nothing happens.
            try await Self.settle(rig, advance)
            #expect(try await Self.campaigns(client, a).isEmpty)

            // 09:00:10: one campaign for the segment's three contacts, all started at once (rate 10 a second).
            advance(4 * 3600 + 10)
            try await Self.settle(rig, advance)
            var made = try await Self.campaigns(client, a)
            #expect(made.count == 1 && made.first?["flow"] == "morning" && made.first?["counts"]["started"] == 3, "\(made)")
            view = try await Self.schedule(client, a, "morning")
            #expect(view["last_occurrence"] == "2027-01-15T12:00:00Z" && view["last_campaign"] == made.first?["id"])
            // Friday's is done: Monday's is next.
            #expect(view["next_at"] == "2027-01-18T12:00:00Z" && view["missed_count"] == 0 && view["last_error"] == .null, "\(view)")
            #expect(try await Self.reached(rig.store) == ["300": 1, "301": 1, "302": 1])

            // Passes later the same morning make nothing more.
            advance(60)
            try await Self.settle(rig, advance)
            #expect(try await Self.campaigns(client, a).count == 1)

            // A contact joins the segment over the weekend: Monday's occurrence reaches them too.
            _ = try await CampaignTests.contact(client, a, channel, "303", tags: ["parent"])
            advance(3 * 86_400)
            try await Self.settle(rig, advance)
            made = try await Self.campaigns(client, a)
            #expect(made.count == 2 && made.allSatisfy { $0["counts"]["started"] != 0 }, "\(made)")
            #expect(try await Self.reached(rig.store) == ["300": 2, "301": 2, "302": 2, "303": 1])

            // A new version without a schedule stops it.
            try await Self.publish(client, rig.adminA, "morning", "flow: morning\ntrigger: { channel: api }\nstart: hi\nblocks:\n  hi:\n    text: \"Hi\"\n")
            try await client.execute(uri: "/v1/flows/morning/schedule", method: .get, headers: a) { #expect($0.status == .notFound) }
            advance(86_400)
            try await Self.settle(rig, advance)
            #expect(try await Self.campaigns(client, a).count == 2)
        }
    }

    /// Five hourly occurrences pass while no process runs: `run_once` runs the latest once, late; `skip` runs none.
    /// Either way the next occurrence is the next one from now, and on-time occurrences run as usual.
    @Test(arguments: Backend.available)
    func downtimeIsRunOnceOrSkippedNeverReplayed(_ backend: Backend) async throws {
        let (rig, advance) = try await CampaignTests.rig(backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            _ = try await ContactsTests.channel(client, rig.adminA)
            try await Self.publish(client, rig.adminA, "catchup", Self.hourly("catchup", missed: "run_once", contacts: ["5511900000001", "5511900000002"]))
            try await Self.publish(client, rig.adminA, "skipper", Self.hourly("skipper", missed: "skip", contacts: ["5511900000003"]))
            #expect(try await Self.schedule(client, a, "catchup")["next_at"] == "2027-01-15T09:00:00Z")

            // Down from 08:00 to 13:30: 09:00 … 13:00 passed.
            advance(5 * 3600 + 1800)
            try await Self.settle(rig, advance)
            let made = try await Self.campaigns(client, a)
            #expect(made.count == 1 && made.first?["flow"] == "catchup" && made.first?["counts"]["started"] == 2, "\(made)")
            let catchup = try await Self.schedule(client, a, "catchup"), skipper = try await Self.schedule(client, a, "skipper")
            #expect(catchup["last_occurrence"] == "2027-01-15T13:00:00Z" && catchup["missed_count"] == 4, "\(catchup)")
            #expect(skipper["last_occurrence"] == .null && skipper["missed_count"] == 5, "\(skipper)")
            #expect(catchup["next_at"] == "2027-01-15T14:00:00Z" && skipper["next_at"] == "2027-01-15T14:00:00Z")
            // The list that ran became contacts on the tenant's one api channel (the skipped one's when it first runs).
            try await client.execute(uri: "/v1/contacts?q=55119000000", method: .get, headers: a) { #expect(RouterTests.json($0)["total"] == 2) }
            #expect(try await Self.reached(rig.store) == ["5511900000001": 1, "5511900000002": 1])

            // 14:00:30: on time, within the grace period, both run.
            advance(1800 + 30)
            try await Self.settle(rig, advance)
            #expect(try await Self.campaigns(client, a).count == 3)
            #expect(try await Self.reached(rig.store) == ["5511900000001": 2, "5511900000002": 2, "5511900000003": 1])
        }
    }

    /// However many processes look, an occurrence is fired once: a firing is written only if the row is still due at
    /// the instant it was claimed at, and its campaign's id is the occurrence's.
    @Test(arguments: Backend.available)
    func anOccurrenceIsFiredOnceAcrossProcesses(_ backend: Backend) async throws {
        let (rig, advance) = try await CampaignTests.rig(backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            _ = try await ContactsTests.channel(client, rig.adminA)
            let flows = (0..<6).map { "hourly\($0)" }
            for (n, flow) in flows.enumerated() {
                try await Self.publish(client, rig.adminA, flow, Self.hourly(flow, missed: "run_once", contacts: ["55119100000\(n)"]))
            }
            advance(3600)
            // Four engines on the one store, as four processes would be, fire at once.
            let engines = (0..<4).map { _ in
                Engine(store: rig.store, connectors: rig.engine.connectors, configuration: rig.engine.configuration, logger: RouterTests.quietLogger,
                       clock: { rig.engine.now })
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for e in engines { group.addTask { for _ in 0..<3 { try await e.runSchedules() } } }
                try await group.waitForAll()
            }
            try await Self.settle(rig, advance)
            let made = try await Self.campaigns(client, a)
            #expect(made.count == 6 && Set(made.map { $0["flow"].text }) == Set(flows), "\(made.map { $0["flow"] })")
            #expect(try await Self.reached(rig.store).values.allSatisfy { $0 == 1 })

            // A process whose lease ran out while it worked, finishing after another fired the same occurrence, writes nothing.
            advance(3600)
            let claimed = try await rig.store.claimSchedules(now: rig.engine.now, lease: 30, limit: 1)
            #expect(claimed.count == 1)
            let s = try #require(claimed.first)
            let occurrence = try #require(s.nextAt)
            let campaign = CampaignRecord(id: ScheduleSpec.campaignID(tenant: s.tenant, flow: s.flow, occurrence: occurrence), tenant: s.tenant,
                                          name: "late", flow: s.flow, channel: made[0]["channel"].text, channelKind: "api", segment: nil,
                                          filter: ["address": []], variables: [:], startsAt: rig.engine.now, rate: 1, dailyLimit: nil, ifBusy: .skip,
                                          createdAt: rig.engine.now)
            let firing = ScheduleFiring(occurrence: occurrence, campaign: campaign, contacts: [], missed: 0, next: occurrence.adding(seconds: 3600), error: nil)
            #expect(try await rig.store.finishSchedule(s, firing, now: rig.engine.now))
            #expect(try await !rig.store.finishSchedule(s, firing, now: rig.engine.now))
            #expect(try await Self.campaigns(client, a).count == 7)
        }
    }

    /// A firing that cannot make a campaign says why on the schedule, and the schedule goes on to its next occurrence.
    @Test(arguments: Backend.available)
    func aFiringThatCannotSendSaysWhy(_ backend: Backend) async throws {
        let (rig, advance) = try await CampaignTests.rig(backend)
        try await rig.app.test(.router) { client in
            let a = RouterTests.auth(rig.adminA)
            // No api channel yet, and no segment called parents.
            try await Self.publish(client, rig.adminA, "morning", Self.morning())
            try await Self.publish(client, rig.adminA, "ping", Self.hourly("ping", missed: "run_once", contacts: ["1"]))
            advance(4 * 3600 + 10)
            try await Self.settle(rig, advance)
            var view = try await Self.schedule(client, a, "morning")
            #expect(view["last_error"].text.contains("no api channel"), "\(view)")
            #expect(view["next_at"] == "2027-01-18T12:00:00Z" && view["last_campaign"] == .null)

            let first = try await ContactsTests.channel(client, rig.adminA)
            advance(3600)
            try await Self.settle(rig, advance)
            #expect(try await Self.schedule(client, a, "ping")["last_error"] == .null)
            // Two api channels: which one is not guessed.
            _ = try await ContactsTests.channel(client, rig.adminA)
            advance(3600)
            try await Self.settle(rig, advance)
            #expect(try await Self.schedule(client, a, "ping")["last_error"].text.contains("several api channels"))
            #expect(try await Self.campaigns(client, a).count == 1)

            // Naming the channel settles it; a segment that does not exist is reported by name.
            try await Self.publish(client, rig.adminA, "morning", Self.morning(", channel: \(first)"))
            advance(3 * 86_400)
            try await Self.settle(rig, advance)
            view = try await Self.schedule(client, a, "morning")
            #expect(view["last_error"] == "no segment parents" && view["channel"] == .string(first), "\(view)")
        }
    }

    /// On a channel kind with a reply window, a scheduled flow must open with an approved template.
    @Test func aTemplateIsRequiredWhereTheReplyWindowRules() async throws {
        let store = try await Backend.sqlite.makeStore()
        try await store.ensureTenant(id: "a", name: "a")
        let time = Mutex(Timestamp(milliseconds: 1_800_000_000_000))
        var configuration = Engine.Configuration()
        configuration.templateKinds = ["api"]
        let engine = Engine(store: store, connectors: ConnectorRegistry([]), configuration: configuration, logger: RouterTests.quietLogger,
                            clock: { time.withLock { $0 } })
        try await store.insertChannel(ChannelRecord(id: "ch_api", tenant: "a", kind: "api", name: "web", callbackURL: nil, createdAt: engine.now))
        let compiler = FlowCompiler(catalog: BuiltinActions.catalog)
        let program = try #require(compiler.compile(source: Self.hourly("ping", missed: "run_once", contacts: ["1"]), file: "ping.yaml").program)
        try await engine.publish(tenant: "a", program: program, source: "")
        time.withLock { $0 = $0.adding(seconds: 3600) }
        #expect(try await engine.runSchedules() == 1)
        let s = try #require(try await store.schedule(tenant: "a", flow: "ping"))
        #expect(s.lastError?.hasPrefix("template_required") == true && s.lastCampaign == nil, "\(s)")
    }
}
