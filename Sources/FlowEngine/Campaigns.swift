import FlowVM
import Foundation

/// A flow sent to a segment's contacts on one channel, paced (docs/api.md, "Campaigns"). Its contacts are taken
/// when it begins (`startsAt`), a row each (`CampaignTarget`), and each is started at most once: the start of a
/// contact's conversation and the mark on its row commit together, so no crash and no second worker repeats one.
public struct CampaignRecord: Sendable, Hashable {
    public enum Status: String, Sendable, CaseIterable {
        /// Waiting for `startsAt`; its contacts are not yet chosen.
        case scheduled
        case running
        case paused
        /// Stopped for good; contacts not yet reached never are.
        case cancelled
        /// Every contact was started or skipped.
        case finished
        /// It cannot go on (its flow is no longer published); `failure` says why.
        case failed
    }
    /// What to do with a contact who is in another conversation on the channel when their turn comes.
    public enum IfBusy: String, Sendable, CaseIterable {
        /// Count them as skipped (`in_conversation`).
        case skip
        /// Try again a minute later, until the campaign is cancelled.
        case queue
    }

    public var id: String
    public var tenant: String
    public var name: String
    public var flow: String
    public var channel: String
    public var channelKind: String
    /// The segment it was made from, if any (its filter is copied in `filter` when the campaign is made).
    public var segment: String?
    /// The contacts it reaches: a segment's `filter` object (the segment's as it was when the campaign was made).
    public var filter: Value
    public var variables: [String: Value]
    public var startsAt: Timestamp
    /// Conversations started per second, at most.
    public var rate: Double
    /// Conversations started on the channel by any campaign in a rolling 24 hours, at most (WhatsApp's messaging tier).
    public var dailyLimit: Int?
    public var ifBusy: IfBusy
    public var status: Status
    public var failure: String?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var finishedAt: Timestamp?

    /// A new campaign id: `cp_` and 20 hex digits.
    public static func newID() -> String { "cp_" + ContactRecord.newID().dropFirst(3) }

    public init(id: String, tenant: String, name: String, flow: String, channel: String, channelKind: String, segment: String?, filter: Value,
                variables: [String: Value], startsAt: Timestamp, rate: Double, dailyLimit: Int?, ifBusy: IfBusy,
                status: Status = .scheduled, createdAt: Timestamp) {
        self.id = id
        self.tenant = tenant
        self.name = name
        self.flow = flow
        self.channel = channel
        self.channelKind = channelKind
        self.segment = segment
        self.filter = filter
        self.variables = variables
        self.startsAt = startsAt
        self.rate = rate
        self.dailyLimit = dailyLimit
        self.ifBusy = ifBusy
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = createdAt
    }
}

/// What became of a campaign's contacts, and of the conversations it started.
public struct CampaignCounts: Sendable, Hashable {
    /// Contacts chosen when it began.
    public var total = 0
    /// Not yet reached.
    public var queued = 0
    /// Conversations started.
    public var started = 0
    /// Not started, by reason: `opted_out`, `in_conversation`, `cancelled`.
    public var skipped: [String: Int] = [:]
    /// Started conversations whose messages the channel took (`sent`), the provider reported delivered or read,
    /// and whose contact wrote back.
    public var sent = 0
    public var delivered = 0
    public var read = 0
    public var replied = 0
    /// Started conversations that failed, by the provider's error code (`flow_failed` when the flow itself did).
    public var failed: [String: Int] = [:]

    public init() {}
}

/// A campaign's contact whose turn has come.
public struct CampaignTarget: Sendable, Hashable {
    public var contact: String
    public var address: String
    public init(contact: String, address: String) {
        self.contact = contact
        self.address = address
    }
}

/// A campaign a worker has leased, and the contacts it may start now (its rate's share since the last batch).
public struct CampaignBatch: Sendable {
    public var campaign: CampaignRecord
    public var targets: [CampaignTarget]
    public init(campaign: CampaignRecord, targets: [CampaignTarget]) {
        self.campaign = campaign
        self.targets = targets
    }
}

/// The row a start made by a campaign marks in its own transaction.
public struct CampaignMark: Sendable, Hashable {
    public var campaign: String
    public var contact: String
    public init(campaign: String, contact: String) {
        self.campaign = campaign
        self.contact = contact
    }
}

/// What a batch did to one contact, as the campaign's row records it.
public enum CampaignTargetOutcome: Sendable, Hashable {
    /// Started (the start itself marked the row) or already handled by another worker.
    case done
    case skipped(reason: String)
    /// Tried again at `at`.
    case later(at: Timestamp)
}

/// Campaigns as the API makes and reads them. Every call is scoped by tenant.
public protocol CampaignRecords: Sendable {
    func insertCampaign(_ campaign: CampaignRecord) async throws
    func campaigns(tenant: String, limit: Int, offset: Int) async throws -> (items: [CampaignRecord], total: Int)
    func campaign(id: String, tenant: String) async throws -> CampaignRecord?
    /// Moves a campaign to `status` if it is in one of `from`; nil when there is no such campaign, else the campaign
    /// as it is now and whether it moved. Cancelling marks its contacts not yet reached as skipped (`cancelled`).
    func setCampaignStatus(id: String, tenant: String, from: Set<CampaignRecord.Status>, to status: CampaignRecord.Status,
                           now: Timestamp) async throws -> (campaign: CampaignRecord, moved: Bool)?
    func campaignCounts(id: String, tenant: String) async throws -> CampaignCounts
}

extension ContactFilter {
    /// The filter a segment's `filter` object holds (`{"tag": [...], "attribute": ["key:op:value"], "opted_in": true,
    /// "seen_after": "2026-11-01T00:00:00Z", ...}`), as the API checked and kept it: how a campaign reads the one it
    /// was made with when it begins.
    public init(value: Value) {
        self.init()
        func texts(_ name: String) -> [String] {
            if case .list(let l) = value[name] { return l.compactMap(\.nonEmptyText) }
            return value[name].nonEmptyText.map { [$0] } ?? []
        }
        func time(_ name: String) -> Timestamp? {
            guard let text = value[name].nonEmptyText else { return nil }
            let f = ISO8601DateFormatter()
            f.formatOptions = text.contains(".") ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
            return f.date(from: text).map(Timestamp.init)
        }
        tags = texts("tag")
        attributes = texts("attribute").compactMap { if case .success(let c) = AttributeCondition.parse($0) { c } else { nil } }
        channel = value["channel"].nonEmptyText
        if case .bool(let b) = value["opted_in"] { optedIn = b }
        seenAfter = time("seen_after")
        seenBefore = time("seen_before")
        search = value["q"].nonEmptyText
        addresses = texts("address")
    }
}
