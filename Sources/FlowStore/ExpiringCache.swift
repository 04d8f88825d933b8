import Synchronization

/// A small map whose entries expire. API keys and channels are read on every request and change rarely;
/// other processes' changes (a key revoked elsewhere) show within `lifetime`. Misses are not cached, so a new
/// key or channel works at once.
final class ExpiringCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let entries = Mutex<[Key: (value: Value, expires: ContinuousClock.Instant)]>([:])
    private let lifetime: Duration
    private let capacity: Int

    init(lifetime: Duration, capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// The cached value, or `load()`'s (kept when not nil).
    func value(_ key: Key, load: () async throws -> Value?) async throws -> Value? {
        let now = ContinuousClock.now
        if let hit = entries.withLock({ $0[key] }), hit.expires > now { return hit.value }
        guard let value = try await load() else {
            entries.withLock { _ = $0.removeValue(forKey: key) }
            return nil
        }
        entries.withLock { e in
            if e.count >= capacity { e.removeAll(keepingCapacity: true) }
            e[key] = (value, now + lifetime)
        }
        return value
    }

    func removeAll(where shouldRemove: (Value) -> Bool) {
        entries.withLock { e in e = e.filter { !shouldRemove($0.value.value) } }
    }
}
