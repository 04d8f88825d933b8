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

    public init() {}
}

/// A reason a contact or filter is refused, for the API to show.
public struct ContactProblem: Error, Sendable, Hashable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// The rules attributes and tags follow, checked wherever they come in (the API, a CSV, a flow's `contact:` block).
public enum ContactAttributes {
    public static let maxAttributes = 100
    public static let maxTags = 50
    public static let maxTextLength = 1_000

    /// An attribute name: 1 to 64 ASCII letters, digits and `_`, starting with a letter, so it reads in a flow as
    /// `contact.attributes.plan` and in a CSV header as itself.
    public static func validKey(_ key: String) -> Bool {
        let u = Array(key.utf8)
        guard (1...64).contains(u.count), isLetter(u[0]) else { return false }
        return u.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") }
    }

    /// A tag: 1 to 64 ASCII letters, digits, `_` and `-`, starting with a letter or digit (`vip`, `black-friday`, `2026`).
    public static func validTag(_ tag: String) -> Bool {
        let u = Array(tag.utf8)
        guard (1...64).contains(u.count), isLetter(u[0]) || isDigit(u[0]) else { return false }
        return u.allSatisfy { isLetter($0) || isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// Whether `s` is a calendar day written `YYYY-MM-DD` (a date attribute: text that sorts in time order).
    public static func isDate(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 10, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"),
              [0, 1, 2, 3, 5, 6, 8, 9].allSatisfy({ isDigit(u[$0]) }),
              let y = Int(s.prefix(4)), let m = Int(s.dropFirst(5).prefix(2)), let d = Int(s.suffix(2)), (1...12).contains(m) else { return false }
        let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
        return (1...days).contains(d)
    }

    private static func isLetter(_ b: UInt8) -> Bool { (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) }
    private static func isDigit(_ b: UInt8) -> Bool { (0x30...0x39).contains(b) }

    /// The value kept for an attribute, or a reason it is refused: text (up to 1,000 characters), a finite number, a
    /// boolean, or a list of those (up to 100 items). A map is refused: attributes stay flat so they can be filtered.
    public static func check(_ key: String, _ value: Value) -> ContactProblem? {
        guard validKey(key) else {
            return ContactProblem("attribute name \"\(key.prefix(80))\" must be 1 to 64 ASCII letters, digits or '_', starting with a letter")
        }
        func scalar(_ v: Value) -> ContactProblem? {
            switch v {
            case .string(let s):
                return s.unicodeScalars.count <= maxTextLength && !s.utf8.contains(0)
                    ? nil : ContactProblem("attribute \(key) is text of at most \(maxTextLength) characters without NUL")
            case .number(let n): return n.isFinite ? nil : ContactProblem("attribute \(key) must be a finite number")
            case .bool: return nil
            default: return ContactProblem("attribute \(key) must be text, a number, a boolean, a date or a list of those")
            }
        }
        if case .list(let items) = value {
            guard items.count <= 100 else { return ContactProblem("attribute \(key) holds at most 100 items") }
            return items.lazy.compactMap(scalar).first
        }
        return scalar(value)
    }

    /// Checks a whole set of attributes and tags.
    public static func check(attributes: [String: Value], tags: [String]) -> ContactProblem? {
        guard attributes.count <= maxAttributes else { return ContactProblem("a contact has at most \(maxAttributes) attributes") }
        for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { if let p = check(k, v) { return p } }
        guard tags.count <= maxTags else { return ContactProblem("a contact has at most \(maxTags) tags") }
        if let bad = tags.first(where: { !validTag($0) }) {
            return ContactProblem("tag \"\(bad.prefix(80))\" must be 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter or digit")
        }
        return nil
    }

    /// The contact as a flow reads it in `contact`: `id` is the address (as before contacts had records), then the
    /// name, phone, attributes and tags.
    public static func flowValue(address: String, name: String?, phone: String?, attributes: [String: Value], tags: [String]) -> Value {
        var contact: [String: Value] = ["id": .string(address), "phone": phone.map(Value.string) ?? .null,
                                        "attributes": .map(attributes), "tags": .list(tags.map(Value.string))]
        if let name { contact["name"] = .string(name) }
        return .map(contact)
    }
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
