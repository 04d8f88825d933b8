import FlowCompiler
import FlowEngine
import FlowRuntime
import FlowVM
import Foundation
import Hummingbird

/// `/v1/campaigns`: a published flow sent to a segment's contacts on one channel, paced, paused, resumed and
/// cancelled, with live counts. The engine's campaign loop does the sending (`Engine.runCampaigns`).
struct CampaignRoutes {
    let store: any CampaignRecords & SegmentRecords & FlowRecords & TenantRecords
    let engine: Engine
    let channels: Channels

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("campaigns", use: list)
        group.post("campaigns", use: create)
        group.get("campaigns/{id}", use: get)
        group.post("campaigns/{id}/pause", use: pause)
        group.post("campaigns/{id}/resume", use: resume)
        group.post("campaigns/{id}/cancel", use: cancel)
        group.get("flows/{name}/schedule", use: schedule)
    }

    static let fields = ["name", "flow", "channel", "segment", "filter", "variables", "at", "rate", "daily_limit", "if_busy"]

    static func view(_ c: CampaignRecord, _ counts: CampaignCounts) -> Value {
        var m: [String: Value] = [
            "id": .string(c.id), "name": .string(c.name), "flow": .string(c.flow), "channel": .string(c.channel),
            "segment": c.segment.map(Value.string) ?? .null, "filter": c.filter, "variables": .map(c.variables),
            "starts_at": .string(c.startsAt.iso8601), "rate": .number(c.rate), "daily_limit": c.dailyLimit.map { .number(Double($0)) } ?? .null,
            "if_busy": .string(c.ifBusy.rawValue), "status": .string(c.status.rawValue), "created_at": .string(c.createdAt.iso8601),
            "updated_at": .string(c.updatedAt.iso8601), "finished_at": c.finishedAt.map { .string($0.iso8601) } ?? .null,
        ]
        if let failure = c.failure { m["failure"] = .string(failure) }
        func tally(_ d: [String: Int]) -> Value { .map(d.mapValues { .number(Double($0)) }) }
        m["counts"] = [
            "total": .number(Double(counts.total)), "queued": .number(Double(counts.queued)), "started": .number(Double(counts.started)),
            "skipped": tally(counts.skipped), "sent": .number(Double(counts.sent)), "delivered": .number(Double(counts.delivered)),
            "read": .number(Double(counts.read)), "replied": .number(Double(counts.replied)), "failed": tally(counts.failed),
        ]
        return .map(m)
    }

    /// A published flow's `trigger.schedule`: what it says, when it fires next and what its last firing made.
    @Sendable func schedule(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let name = try BodyText.pathIdentifier(context, "name", max: 200)
        guard let s = try await engine.store.schedule(tenant: caller.tenant, flow: name) else {
            throw Problem(.notFound, "flow \(name) has no published schedule")
        }
        var m: [String: Value] = [
            "flow": .string(s.flow), "version": .number(Double(s.version)), "cron": s.spec["cron"], "timezone": s.spec["timezone"],
            "missed": s.spec["missed"], "channel": s.spec["channel"], "rate": s.spec["rate"],
            "next_at": s.nextAt.map { .string($0.iso8601) } ?? .null,
            "last_occurrence": s.lastOccurrence.map { .string($0.iso8601) } ?? .null,
            "last_campaign": s.lastCampaign.map(Value.string) ?? .null, "last_error": s.lastError.map(Value.string) ?? .null,
            "missed_count": .number(Double(s.missed)),
        ]
        if s.spec["segment"] != .null { m["segment"] = s.spec["segment"] } else { m["contacts"] = s.spec["contacts"] }
        return json(.map(m))
    }

    private func existing(_ context: FlowlineRequestContext, _ caller: Caller) async throws -> CampaignRecord {
        let id = try context.parameters.require("id")
        guard let c = try await store.campaign(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no campaign \(id)") }
        return c
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let page = try Page(request)
        let (items, total) = try await store.campaigns(tenant: caller.tenant, limit: page.limit, offset: page.offset)
        var views: [Value] = []
        for c in items { views.append(Self.view(c, try await store.campaignCounts(id: c.id, tenant: caller.tenant))) }
        return page.response("campaigns", views, total: total)
    }

    @Sendable func get(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let c = try await existing(context, caller)
        return json(Self.view(c, try await store.campaignCounts(id: c.id, tenant: caller.tenant)))
    }

    /// `{name, flow, channel, segment | filter, variables?, at?, rate?, daily_limit?, if_busy?}` → 201 the campaign.
    @Sendable func create(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "sending campaigns needs a supervisor or an admin")
        let body = try await request.jsonObject(context: context)
        if let stray = body.keys.sorted().first(where: { !Self.fields.contains($0) }) {
            throw Problem(.badRequest, "unknown field \(stray.prefix(64))")
        }
        let name = try BodyText.identifier(body, "name", max: 100)
        let flowName = try BodyText.identifier(body, "flow", max: 200, what: "the name of a published flow")
        let channelID = try BodyText.identifier(body, "channel", max: 64, what: "the id of the channel to send on")
        guard let channel = try await store.channel(id: channelID, tenant: caller.tenant) else { throw Problem(.notFound, "no channel \(channelID)") }

        // Whom: a saved segment (its filter as it is now) or a filter given here, in the segment's form.
        var segmentID: String?
        let filter: Value
        switch (body["segment"], body["filter"]) {
        case (.some, .some): throw Problem(.badRequest, "give segment or filter, not both")
        case (nil, nil): throw Problem(.badRequest, "segment (a segment's id) or filter (a segment's filter object) is required")
        case (.some, nil):
            let id = try BodyText.identifier(body, "segment", max: 64, what: "a segment's id")
            guard let s = try await store.segment(id: id, tenant: caller.tenant) else { throw Problem(.notFound, "no segment \(id)") }
            segmentID = s.id
            filter = try SegmentRoutes.filter(s.filter).1
        case (nil, .some(let given)):
            filter = try SegmentRoutes.filter(given).1
        }
        guard let flow = try await store.publishedFlows(tenant: caller.tenant).first(where: { $0.name == flowName }) else {
            throw Problem(.notFound, "flow \(flowName) has no published version")
        }
        if let other = filter["channel"].nonEmptyText, other != channelID {
            throw Problem(.badRequest, "the filter picks channel \(other.prefix(64)); the campaign sends on \(channelID)")
        }

        let variables = try StartRoutes.variables(body)
        let now = engine.now
        let startsAt = max(try StartRoutes.at(body) ?? now, now)
        var rate = channel.kind == "whatsapp" ? 80.0 : 10.0
        if let given = body["rate"] {
            guard case .number(let r) = given, r >= 0.01, r <= 1000 else {
                throw Problem(.badRequest, "rate is conversations started per second, from 0.01 to 1000")
            }
            rate = r
        }
        var dailyLimit: Int?
        if let given = body["daily_limit"] {
            guard case .number(let n) = given, n == n.rounded(), n >= 1, n <= 100_000_000 else {
                throw Problem(.badRequest, "daily_limit is a whole number of conversations per 24 hours, from 1")
            }
            dailyLimit = Int(n)
        }
        var ifBusy = CampaignRecord.IfBusy.skip
        if let given = body["if_busy"] {
            guard let text = given.nonEmptyText, let b = CampaignRecord.IfBusy(rawValue: text) else {
                throw Problem(.badRequest, "if_busy is skip or queue")
            }
            ifBusy = b
        }

        if let kind = flow.triggerChannel, kind != channel.kind {
            throw Problem(.conflict, "flow \(flowName) runs on \(kind) channels; channel \(channelID) is \(channel.kind)", extra: ["code": "wrong_channel"])
        }
        guard let program = try await store.program(hash: flow.programHash) else { throw Problem(.internalError, "the flow's program is missing") }
        try StartRoutes.check(variables, of: program, flow: flowName)
        // Most of a campaign's contacts have not written in a day: on a channel with a reply window, the flow must
        // open with an approved template.
        if channels[channel.kind]?.replyWindow != nil, program.metadata["whatsapp_template"] == .null, program.metadata["opens_with_template"] != true {
            throw Problem(.conflict, "\(channel.kind) takes only approved templates outside its reply window: flow \(flowName) must open with "
                + "use: whatsapp.template or name a whatsapp_template", extra: ["code": "template_required"])
        }

        let c = CampaignRecord(id: CampaignRecord.newID(), tenant: caller.tenant, name: name, flow: flowName, channel: channelID,
                               channelKind: channel.kind, segment: segmentID, filter: filter, variables: variables, startsAt: startsAt,
                               rate: rate, dailyLimit: dailyLimit, ifBusy: ifBusy, createdAt: now)
        try await store.insertCampaign(c)
        try await store.audit(context, caller, "campaign.create", c.id, at: now)
        engine.campaignsChanged()
        return json(Self.view(c, CampaignCounts()), status: .created)
    }

    private func move(_ context: FlowlineRequestContext, from: Set<CampaignRecord.Status>, to: CampaignRecord.Status,
                      _ verb: String, audit action: String) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "\(verb) campaigns needs a supervisor or an admin")
        let id = try context.parameters.require("id")
        guard let (c, moved) = try await store.setCampaignStatus(id: id, tenant: caller.tenant, from: from, to: to, now: engine.now) else {
            throw Problem(.notFound, "no campaign \(id)")
        }
        guard moved else {
            throw Problem(.conflict, "campaign \(id) is \(c.status.rawValue)", extra: ["code": .string("campaign_\(c.status.rawValue)")])
        }
        try await store.audit(context, caller, action, c.id, at: engine.now)
        if to == .running { engine.campaignsChanged() }
        return json(Self.view(c, try await store.campaignCounts(id: c.id, tenant: caller.tenant)))
    }

    @Sendable func pause(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        try await move(context, from: [.scheduled, .running], to: .paused, "pausing", audit: "campaign.pause")
    }

    @Sendable func resume(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        try await move(context, from: [.paused], to: .running, "resuming", audit: "campaign.resume")
    }

    @Sendable func cancel(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        try await move(context, from: [.scheduled, .running, .paused], to: .cancelled, "cancelling", audit: "campaign.cancel")
    }
}
