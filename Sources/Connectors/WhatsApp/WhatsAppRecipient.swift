import FlowEngine
import FlowVM

/// Who a Cloud API message goes to. A contact known by phone number is addressed with `to`; one known by its
/// business-scoped user id (BSUID, `US.13491208655302741918`, or a parent BSUID `US.ENT.…`) with `recipient`,
/// and with `to` as well when its phone number is known, which the Cloud API then prefers. A BSUID never goes in
/// `to`: that field takes phone numbers.
public struct WhatsAppRecipient: Sendable, Hashable {
    public var phone: String?
    public var userID: String?

    /// `contact` is the conversation's contact key (a BSUID when the notification carried one, else the `wa_id`);
    /// `phone` is the phone number stored for it, if any.
    public init(contact: String, phone: String? = nil) {
        if Self.isUserID(contact) {
            userID = contact
            self.phone = phone.flatMap { Self.isPhone($0) ? $0 : nil }
        } else {
            self.phone = contact
            userID = nil
        }
    }

    /// A BSUID (`Inbound.isBusinessScopedUserID`).
    public static func isUserID(_ s: String) -> Bool { Inbound.isBusinessScopedUserID(s) }

    /// A phone number as the Cloud API takes it: digits, with an optional leading `+`.
    public static func isPhone(_ s: String) -> Bool {
        let digits = s.hasPrefix("+") ? s.dropFirst() : Substring(s)
        return (5...20).contains(digits.count) && digits.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// The addressing members of a message body.
    var fields: [String: Value] {
        var out: [String: Value] = ["messaging_product": "whatsapp", "recipient_type": "individual"]
        if let phone { out["to"] = .string(phone) }
        if let userID { out["recipient"] = .string(userID) }
        return out
    }
}
