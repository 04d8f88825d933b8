import FlowVM

/// A person a tenant talks to on one channel, kept beyond any conversation: the address the channel knows them by, a
/// name, typed attributes, tags and whether they agreed to hear from the business there. Conversations name their
/// contact by `(channel, address)`; the API by `id`.
public struct ContactRecord: Sendable, Hashable {
    public var id: String
    public var tenant: String
    public var channel: String
    public var address: String
    public var name: String?
    public var phone: String?
    /// A map of attribute name to value: text, number, boolean, date (`YYYY-MM-DD` text) or a list of those.
    public var attributes: [String: Value]
    public var tags: [String]
    /// Consent on this channel: when and how it was given (`consent.at`, `consent.source`), and whether the contact
    /// has since opted out (then no campaign or started flow reaches them).
    public var consentAt: Timestamp?
    public var consentSource: String?
    public var optedOutAt: Timestamp?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var lastSeenAt: Timestamp?
    /// Counts edits through the API (not the name and phone a channel reports): what `updateContact(_:over:)` checks.
    public var revision: Int64 = 0

    /// A new contact id: `ct_` and 20 hex digits (80 random bits).
    public static func newID() -> String {
        var g = SystemRandomNumberGenerator()
        return "ct_" + (0..<20).map { _ in String(Int.random(in: 0..<16, using: &g), radix: 16) }.joined()
    }

    public init(id: String, tenant: String, channel: String, address: String, name: String? = nil, phone: String? = nil,
                attributes: [String: Value] = [:], tags: [String] = [], createdAt: Timestamp) {
        self.id = id
        self.tenant = tenant
        self.channel = channel
        self.address = address
        self.name = name
        self.phone = phone
        self.attributes = attributes
        self.tags = tags
        self.createdAt = createdAt
        self.updatedAt = createdAt
    }

    /// Whether campaigns and started flows may reach this contact: consent given and not withdrawn.
    public var optedIn: Bool { consentAt != nil && optedOutAt == nil }
}

/// A condition on one attribute, as the contacts list takes it: `score:gte:10`, `plan:eq:gold`, `city:exists`.
public struct AttributeCondition: Sendable, Hashable {
    public enum Operator: String, Sendable, CaseIterable {
        case eq, ne, lt, lte, gt, gte, contains, exists
    }
    public var key: String
    public var op: Operator
    /// The value compared with: a number compares numerically with number attributes, anything else as text
    /// (dates as `YYYY-MM-DD` sort as text). Absent for `exists`.
    public var value: String?

    public init(key: String, op: Operator, value: String?) {
        self.key = key
        self.op = op
        self.value = value
    }

    /// Parses `key:op:value` (the value may itself hold colons) or `key:exists`; nil with a reason when malformed.
    public static func parse(_ text: String) -> Result<AttributeCondition, ContactProblem> {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, ContactAttributes.validKey(parts[0]) else {
            return .failure(ContactProblem("attribute filter \"\(text.prefix(80))\" is not key:operator:value (or key:exists)"))
        }
        guard let op = Operator(rawValue: parts[1]) else {
            return .failure(ContactProblem("attribute filter operator \(parts[1].prefix(20)) is not one of "
                + Operator.allCases.map(\.rawValue).joined(separator: ", ")))
        }
        if op == .exists {
            guard parts.count == 2 else { return .failure(ContactProblem("attribute filter key:exists takes no value")) }
            return .success(AttributeCondition(key: parts[0], op: op, value: nil))
        }
        guard parts.count == 3 else { return .failure(ContactProblem("attribute filter \(parts[0]):\(op.rawValue) needs a value")) }
        return .success(AttributeCondition(key: parts[0], op: op, value: parts[2]))
    }
}

/// Which contacts a list shows; every condition must hold.
public struct ContactFilter: Sendable, Hashable {
    /// Contacts with every one of these tags.
    public var tags: [String] = []
    public var attributes: [AttributeCondition] = []
    public var channel: String?
    /// `true`: consent given and not withdrawn; `false`: the others.
    public var optedIn: Bool?
    public var seenAfter: Timestamp?
    public var seenBefore: Timestamp?
    /// Text in the name, the address or the phone (case-insensitive for ASCII letters).
    public var search: String?
    /// Contacts at one of these addresses (a schedule's fixed list; not a filter the API offers).
    public var addresses: [String] = []

    public init() {}
}

/// Contacts as the API reads and writes them. Every call is scoped by tenant.
public protocol ContactRecords: Sendable {
    func contacts(tenant: String, filter: ContactFilter, limit: Int, offset: Int) async throws -> (items: [ContactRecord], total: Int)
    func contact(id: String, tenant: String) async throws -> ContactRecord?
    func contact(tenant: String, channel: String, address: String) async throws -> ContactRecord?
    /// Inserts a contact; false (and nothing written) when the channel already has one at that address.
    func insertContact(_ contact: ContactRecord) async throws -> Bool
    /// Replaces a contact's name, attributes, tags and consent if it still is as `old` left it; false when it changed
    /// meanwhile (or is gone), so a concurrent edit is not lost.
    func updateContact(_ contact: ContactRecord, over old: ContactRecord) async throws -> Bool
    /// Deletes a contact record (its conversations stay); false when there is none.
    func deleteContact(id: String, tenant: String) async throws -> Bool
    /// Erases everything held about a contact (a data subject's request): its conversations with their messages,
    /// variables, traces, events, delivery statuses and pending sends, and the record. Nil when there is no such
    /// contact; else how many conversations and messages went.
    func eraseContact(id: String, tenant: String) async throws -> (conversations: Int, messages: Int)?
}

/// A saved contact filter, evaluated each time it is used (so it always means who matches now): a campaign's audience,
/// a list an agent opens. `filter` is the contacts list's query as an object (`{"tag": ["vip"], "attribute":
/// ["plan:eq:gold"], "opted_in": true}`), checked when it is saved.
public struct SegmentRecord: Sendable, Hashable {
    public var id: String
    public var tenant: String
    public var name: String
    public var filter: Value
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    /// A new segment id: `sg_` and 20 hex digits.
    public static func newID() -> String { "sg_" + ContactRecord.newID().dropFirst(3) }

    public init(id: String, tenant: String, name: String, filter: Value, createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id
        self.tenant = tenant
        self.name = name
        self.filter = filter
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// Segments as the API reads and writes them, scoped by tenant. Names are unique per tenant.
public protocol SegmentRecords: Sendable {
    func segments(tenant: String, limit: Int, offset: Int) async throws -> (items: [SegmentRecord], total: Int)
    func segment(id: String, tenant: String) async throws -> SegmentRecord?
    /// False (nothing written) when the tenant has a segment by that name.
    func insertSegment(_ s: SegmentRecord) async throws -> Bool
    /// Nil when there is no such segment; false when another has the new name.
    func updateSegment(_ s: SegmentRecord) async throws -> Bool?
    func deleteSegment(id: String, tenant: String) async throws -> Bool
}
