import Foundation
import Synchronization

/// What the compiler can tell about a pattern before any contact sends a reply: that it is valid, short enough,
/// and does not backtrack exponentially on the replies most likely to make it (runs of one character with a
/// character that breaks the match at the end). Passing the probe is no proof; the match budget still holds at
/// run time (`Operators.regexBudget`). The probe's subjects are 500 characters, so a pattern that is slow only on
/// far longer replies passes here and meets the budget there.
public enum PatternCheck {
    public static let maxLength = 1_000

    public typealias Problem = (code: String, message: String)

    /// Verdicts by pattern: a flow is compiled again on every save, read, validation and simulation, and the probe
    /// runs dozens of matches. Bounded like the compiled patterns themselves.
    private static let verdicts = Mutex<[String: Problem?]>([:])

    /// The diagnostic code and message for a pattern that must not be used, or nil.
    public static func problem(_ pattern: String) -> Problem? {
        if let known = verdicts.withLock({ $0[pattern] }) { return known }
        let verdict = judge(pattern)
        verdicts.withLock { cache in
            if cache.count >= 512 { cache.removeAll(keepingCapacity: true) }
            cache[pattern] = .some(verdict)
        }
        return verdict
    }

    private static func judge(_ pattern: String) -> Problem? {
        guard pattern.count <= maxLength else {
            return ("invalid-regex", "the pattern is longer than \(maxLength) characters")
        }
        guard Operators.compiledPattern(pattern) != nil else {
            return ("invalid-regex", "'\(pattern.prefix(60))' is not a valid pattern")
        }
        // Every literal character of the pattern, and one of each common class, repeated.
        var probes = Set(pattern.unicodeScalars.filter { $0.properties.isAlphabetic || ("0"..."9").contains($0) || " -_.@".unicodeScalars.contains($0) }.map(Character.init))
        probes.formUnion(["a", "A", "1", " "])
        for c in probes.sorted().prefix(24) {
            for tail in ["\u{1}", "!"] {
                let subject = String(repeating: c, count: 500) + tail
                do {
                    _ = try Operators.regexMatch(subject, pattern)
                } catch {
                    return ("slow-pattern",
                            "'\(pattern.prefix(60))' can take a very long time on some replies: nested repetition such as (a+)+ backtracks; write it without repeating a repetition")
                }
            }
        }
        return nil
    }
}
