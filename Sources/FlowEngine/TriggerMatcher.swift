import FlowVM
import Foundation

/// Picks the published flow an inbound message starts: a flow on the message's channel kind whose keyword
/// appears in the text as a whole word (ignoring case and accents) wins; otherwise a flow on that channel with no
/// keywords (a catch-all) that nothing else starts (`PublishedFlow.catchAll`). Ties go to the flow whose name sorts first, so routing is predictable.
public enum TriggerMatcher {
    public static func match(text: String, channelKind: String, flows: [PublishedFlow]) -> PublishedFlow? {
        let candidates = flows.filter { $0.triggerChannel == channelKind }.sorted { $0.name < $1.name }
        let words = " " + fold(text).split(whereSeparator: { !$0.isLetter && !$0.isNumber }).joined(separator: " ") + " "
        if let hit = candidates.first(where: { flow in
            flow.keywords.contains { keyword in
                let k = fold(keyword).split(whereSeparator: { !$0.isLetter && !$0.isNumber }).joined(separator: " ")
                return !k.isEmpty && words.contains(" \(k) ")
            }
        }) {
            return hit
        }
        return candidates.first { $0.catchAll }
    }

    static func fold(_ s: String) -> String {
        s.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil)
    }
}
