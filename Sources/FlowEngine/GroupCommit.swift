import Synchronization

/// Group commit: concurrent callers share one transaction. A caller that finds fewer than `maxLeaders` commits
/// running becomes a leader and commits everything queued (up to `maxBatch` per round) until the queue is empty;
/// the others wait for their own result. One fsync then acknowledges a whole burst of messages.
///
/// If a shared commit fails, its items are committed one by one, so one bad item fails only its own caller.
public final class GroupCommit<Item: Sendable, Result: Sendable>: Sendable {
    public typealias Batch = @Sendable ([Item]) async throws -> [Result]
    public typealias Single = @Sendable (Item) async throws -> Result

    private struct Waiter {
        var item: Item
        var continuation: CheckedContinuation<Result, any Error>
    }

    private struct State {
        var queue: [Waiter] = []
        var leaders = 0
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    private let maxLeaders: Int
    private let batch: Batch
    private let single: Single

    public init(maxBatch: Int, maxLeaders: Int, batch: @escaping Batch, single: @escaping Single) {
        precondition(maxBatch > 0 && maxLeaders > 0)
        self.maxBatch = maxBatch
        self.maxLeaders = maxLeaders
        self.batch = batch
        self.single = single
    }

    /// Commits `item` with whatever else is queued; returns its own result.
    public func submit(_ item: Item) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            let lead = state.withLock { s in
                s.queue.append(Waiter(item: item, continuation: continuation))
                guard s.leaders < maxLeaders else { return false }
                s.leaders += 1
                return true
            }
            if lead { Task { await self.lead() } }
        }
    }

    private func lead() async {
        while true {
            let round: [Waiter] = state.withLock { s in
                guard !s.queue.isEmpty else {
                    s.leaders -= 1
                    return []
                }
                let n = min(maxBatch, s.queue.count)
                defer { s.queue.removeFirst(n) }
                return Array(s.queue.prefix(n))
            }
            guard !round.isEmpty else { return }
            do {
                let results = try await batch(round.map(\.item))
                precondition(results.count == round.count, "a batch commit returns one result per item")
                for (w, r) in zip(round, results) { w.continuation.resume(returning: r) }
            } catch {
                for w in round {
                    do { w.continuation.resume(returning: try await single(w.item)) } catch { w.continuation.resume(throwing: error) }
                }
            }
        }
    }
}
