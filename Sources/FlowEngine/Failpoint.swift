import Foundation
import Synchronization

/// Named moments where a test can kill the process, to prove what a crash there costs (docs/engine.md, "Exactly
/// once, precisely"). Inert unless `FLOWLINE_FAILPOINTS` is set when the process starts:
///
///     FLOWLINE_FAILPOINTS=delivery.after-call:stripe.checkout,ingest.after-commit@3
///
/// Each entry is `name`, optionally `:detail` (only hits with that detail count: the action of a delivery, the
/// event kind of a turn), `@n` (the n-th counted hit, 1 by default) and `~ms` (pause that long instead of dying). At
/// that hit the process writes one line to standard error and kills itself with SIGKILL, as an out-of-memory kill or
/// a power cut would: no handler runs, no buffer is flushed, no transaction is finished. A pause holds the work in
/// flight (to stop the process gracefully meanwhile, say) and then goes on.
public enum Failpoint: String, CaseIterable, Sendable {
    /// A connector's call has returned (the message is sent, the session created) and its done mark is not yet
    /// committed. Detail: the action (`channel.send`, `stripe.checkout`, `email.send`, …).
    case deliveryAfterCall = "delivery.after-call"
    /// Deliveries are leased and none has been attempted.
    case deliveryAfterClaim = "delivery.after-claim"
    /// Due conversations are leased and no turn has run.
    case turnAfterClaim = "turn.after-claim"
    /// A turn's VM run has finished and its outcome (state, outbox, timers) is not yet committed. Detail: the kind of
    /// each event it processed (`message`, `external`, `effect`, …) or `timer` when a timer woke it.
    case turnAfterRun = "turn.after-run"
    /// Inside a group-committed ingest transaction, every row written, before `COMMIT`.
    case ingestBeforeCommit = "ingest.before-commit"
    /// A campaign's start of one contact's conversation is committed (and the contact's row marked with it), and
    /// the batch's other contacts are not yet started.
    case campaignAfterStart = "campaign.after-start"
    /// The ingest is committed and its caller (an HTTP request, a webhook) has not been answered.
    case ingestAfterCommit = "ingest.after-commit"

    struct Armed {
        var point: Failpoint
        var detail: String?
        var hit: Int
        /// Milliseconds to pause instead of killing.
        var pause: Int?
    }

    private static let armed: [Armed] = parse(ProcessInfo.processInfo.environment["FLOWLINE_FAILPOINTS"] ?? "")
    /// Counted hits, one per armed entry.
    private static let counts = Mutex([Int](repeating: 0, count: armed.count))

    /// The entries of `spec` this build knows; unknown names are reported once on standard error and ignored.
    static func parse(_ spec: String) -> [Armed] {
        spec.split(separator: ",").compactMap { entry in
            var text = entry.trimmingCharacters(in: .whitespaces)
            var pause: Int?
            if let tilde = text.lastIndex(of: "~"), let ms = Int(text[text.index(after: tilde)...]), ms >= 0 {
                pause = ms
                text = String(text[..<tilde])
            }
            var hit = 1
            if let at = text.lastIndex(of: "@"), let n = Int(text[text.index(after: at)...]), n > 0 {
                hit = n
                text = String(text[..<at])
            }
            var detail: String?
            if let colon = text.firstIndex(of: ":") {
                detail = String(text[text.index(after: colon)...])
                text = String(text[..<colon])
            }
            guard let point = Failpoint(rawValue: text) else {
                FileHandle.standardError.write(Data("flowline: unknown failpoint \(text) ignored\n".utf8))
                return nil
            }
            return Armed(point: point, detail: detail, hit: hit, pause: pause)
        }
    }

    /// Kills the process here if this point is armed for one of `details` (or for any, when the entry names none)
    /// and this is its chosen hit. `details` is only evaluated when something is armed: a process without
    /// `FLOWLINE_FAILPOINTS` pays one load of an empty array per call.
    public static func hit(_ point: Failpoint, _ detailsOf: @autoclosure () -> [String] = []) {
        guard !armed.isEmpty else { return }
        let details = detailsOf()
        let fired: Armed? = counts.withLock { counts in
            var fired: Armed?
            for (i, a) in armed.enumerated() where a.point == point {
                if let d = a.detail, !details.contains(d) { continue }
                counts[i] += 1
                if counts[i] == a.hit { fired = a }
            }
            return fired
        }
        guard let fired else { return }
        let what = "flowline: failpoint \(point.rawValue)\(details.isEmpty ? "" : " (" + details.joined(separator: ",") + ")") reached; "
        if let pause = fired.pause {
            FileHandle.standardError.write(Data((what + "pausing \(pause) ms\n").utf8))
            usleep(UInt32(min(pause, 600_000)) * 1000)
            return
        }
        FileHandle.standardError.write(Data((what + "killing the process\n").utf8))
        kill(getpid(), SIGKILL)
        // SIGKILL cannot be caught; wait for it rather than run on.
        while true { pause() }
    }
}
