import Foundation
import FlowVM

/// What a tenant sets for all its channels: the words that opt a contact out and the reply they get, and how long
/// ended conversations keep their messages. A tenant that set nothing has the defaults.
public struct TenantSettings: Sendable, Hashable {
    /// A whole message equal to one of these (ignoring case, accents, spaces and closing punctuation) opts its
    /// contact out on that channel.
    public var optOutWords: [String]
    /// What a contact is told, once, when they opt out; nil: nothing is sent.
    public var optOutReply: String?
    /// Days an ended conversation keeps its messages and traces; nil: kept until erased.
    public var messageRetentionDays: Int?

    public static let defaultOptOutWords = ["STOP", "SAIR", "PARAR"]
    public static let defaultOptOutReply =
        "Pronto: você não receberá mais nossas mensagens por aqui. / Done: you will not get our messages here any more."
    public static let maxWords = 20, maxWordLength = 32, maxReplyLength = 1_000, maxRetentionDays = 3_650

    public init(optOutWords: [String] = TenantSettings.defaultOptOutWords, optOutReply: String? = TenantSettings.defaultOptOutReply,
                messageRetentionDays: Int? = nil) {
        self.optOutWords = optOutWords
        self.optOutReply = optOutReply
        self.messageRetentionDays = messageRetentionDays
    }

    /// Whether `text`, as a whole, is one of the opt-out words: `stop`, ` Sair! `, `PARAR.` all are for the defaults;
    /// `stop sending me offers` is not (a flow may answer that).
    public func isOptOut(_ text: String) -> Bool {
        guard text.utf8.count <= 4 * Self.maxWordLength + 16 else { return false }
        let given = Self.normalized(text)
        return !given.isEmpty && optOutWords.contains { Self.normalized($0) == given }
    }

    /// A word as it is compared: trimmed of spaces and punctuation around it, case and accents folded.
    public static func normalized(_ word: String) -> String {
        let trimmed = word.trimmingCharacters(in: CharacterSet.whitespacesAndNewlines.union(.punctuationCharacters).union(.symbols))
        return trimmed.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil)
    }

    private static func isLetterOrDigit(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .decimalNumber, .letterNumber, .otherNumber: true
        default: false
        }
    }

    /// Why these settings cannot be kept, or nil.
    public var problem: String? {
        guard (1...Self.maxWords).contains(optOutWords.count) else { return "opt_out.words lists 1 to \(Self.maxWords) words" }
        let lineBreaks: Set<Unicode.Scalar> = ["\n", "\r", "\u{2028}", "\u{2029}"]
        for w in optOutWords {
            let scalars = w.unicodeScalars
            guard (1...Self.maxWordLength).contains(scalars.count), !scalars.contains(where: lineBreaks.contains),
                  scalars.contains(where: Self.isLetterOrDigit) else {
                return "each opt-out word has 1 to \(Self.maxWordLength) characters, letters or digits among them, on one line"
            }
        }
        if let r = optOutReply, r.isEmpty || r.unicodeScalars.count > Self.maxReplyLength {
            return "opt_out.reply is 1 to \(Self.maxReplyLength) characters, or null to send nothing"
        }
        if let d = messageRetentionDays, !(1...Self.maxRetentionDays).contains(d) {
            return "retention.messages_days is 1 to \(Self.maxRetentionDays), or null to keep messages"
        }
        return nil
    }
}

/// A message that opts its contact out, as ingest gets it: what to tell them if this is the first time.
public struct OptOut: Sendable, Hashable {
    public var reply: String?
    public init(reply: String?) { self.reply = reply }
}
