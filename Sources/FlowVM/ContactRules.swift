import Foundation

/// What a contact record holds that flows and the API both write: the rules attributes and tags follow, and the edit a
/// flow's `contact:` block makes. They live with the VM so a flow's edit is checked where it runs, and a mistake goes
/// to the block's `on_error` like any other runtime error.

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
        guard validKey(key) else { return keyProblem(key) }
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
        if let bad = tags.first(where: { !validTag($0) }) { return tagProblem(bad) }
        return nil
    }

    public static func keyProblem(_ key: String) -> ContactProblem {
        ContactProblem("attribute name \"\(key.prefix(80))\" must be 1 to 64 ASCII letters, digits or '_', starting with a letter")
    }

    public static func tagProblem(_ tag: String) -> ContactProblem {
        ContactProblem("tag \"\(tag.prefix(80))\" must be 1 to 64 ASCII letters, digits, '_' or '-', starting with a letter or digit")
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

/// An edit a flow's `contact:` block makes to its contact: attributes set (a null value removes one) or removed, tags
/// added or removed. (Not the name: the channel reports one with every message, and it would overwrite the flow's; a
/// flow keeps a name it asked for as an attribute.) It is committed with the turn that made it, merged into the record as it is
/// then (another conversation of the same contact may have changed it meanwhile).
public struct ContactPatch: Sendable, Hashable {
    public var set: [String: Value] = [:]
    public var unset: [String] = []
    public var tag: [String] = []
    public var untag: [String] = []

    public init(set: [String: Value] = [:], unset: [String] = [], tag: [String] = [], untag: [String] = []) {
        self.set = set
        self.unset = unset
        self.tag = tag
        self.untag = untag
    }

    /// Reads the map the compiler lays out (`set`, `unset`, `tag`, `untag`) and checks every name, tag and
    /// value in it; a tag written as one text may list several separated by commas.
    public init(value: Value) throws(ContactProblem) {
        guard case .map(let m) = value else { throw ContactProblem("a contact edit must be a map") }
        if case .map(let given) = m["set"] ?? .null {
            for (key, v) in given.sorted(by: { $0.key < $1.key }) {
                if v == .null {
                    guard ContactAttributes.validKey(key) else { throw ContactAttributes.keyProblem(key) }
                    unset.append(key)
                    continue
                }
                // A date read from a reply (`2026-12-01`) stays text; a whole number stays a number.
                if let p = ContactAttributes.check(key, v) { throw p }
                set[key] = v
            }
        }
        func names(_ field: String) -> [String] {
            switch m[field] ?? .null {
            case .list(let items): items.flatMap { Self.names(in: $0.text) }
            case .null: []
            case let v: Self.names(in: v.text)
            }
        }
        for key in names("unset") {
            guard ContactAttributes.validKey(key) else { throw Self.unquoted("an attribute name", ContactAttributes.keyProblem(key)) }
            if !unset.contains(key) { unset.append(key) }
        }
        for (field, keep) in [("tag", true), ("untag", false)] {
            for t in names(field) {
                guard ContactAttributes.validTag(t) else { throw Self.unquoted("a tag", ContactAttributes.tagProblem(t)) }
                if keep { if !tag.contains(t) { tag.append(t) } } else if !untag.contains(t) { untag.append(t) }
            }
        }
    }

    /// A problem without the text it is about: a tag or name a flow computes may come from what the contact wrote, and
    /// a conversation's failure is shown to operators and logged.
    private static func unquoted(_ what: String, _ p: ContactProblem) -> ContactProblem {
        guard let r = p.message.range(of: " must ") else { return p }
        return ContactProblem(what + p.message[r.lowerBound...])
    }

    /// The names in one text: several may be given separated by commas (`"lead, 2026"`).
    public static func names(in text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Whether the edit changes nothing at all.
    public var isEmpty: Bool { self.set.isEmpty && unset.isEmpty && tag.isEmpty && untag.isEmpty }

    /// Applies the edit: removals first, then what is set and added. Refused, leaving everything as it was, when the
    /// result would hold more attributes or tags than a contact may.
    public func apply(attributes: inout [String: Value], tags: inout [String]) -> ContactProblem? {
        var a = attributes, t = tags
        for key in unset { a[key] = nil }
        for (key, v) in set { a[key] = v }
        t.removeAll { untag.contains($0) }
        for tag in tag where !t.contains(tag) { t.append(tag) }
        guard a.count <= ContactAttributes.maxAttributes else {
            return ContactProblem("a contact has at most \(ContactAttributes.maxAttributes) attributes")
        }
        guard t.count <= ContactAttributes.maxTags else { return ContactProblem("a contact has at most \(ContactAttributes.maxTags) tags") }
        (attributes, tags) = (a, t)
        return nil
    }

    /// The edit as traces and the outbox-free turn record show it.
    public var value: Value {
        var v: [String: Value] = [:]
        if !set.isEmpty { v["set"] = .map(set) }
        if !unset.isEmpty { v["unset"] = .list(unset.map(Value.string)) }
        if !tag.isEmpty { v["tag"] = .list(tag.map(Value.string)) }
        if !untag.isEmpty { v["untag"] = .list(untag.map(Value.string)) }
        return .map(v)
    }
}
