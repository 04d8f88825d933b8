import NIOCore
import NIOPosix
import Synchronization

/// Admits CPU-heavy requests (compiling, validating, simulating, diffing) a few at a time, per tenant and overall,
/// and runs them on NIO's blocking thread pool rather than the cooperative pool that serves every other request.
/// A request that finds no slot waits up to `queueTimeout`, then is refused with a `Retry-After`: 429 when its
/// own tenant holds all of its slots, 503 when the server as a whole is busy.
final class WorkLimiter: Sendable {
    let perTenant: Int
    let total: Int
    let queueTimeout: Duration

    private struct Waiter {
        var id: UInt64
        var tenant: String
        var continuation: CheckedContinuation<Bool, Never>
    }
    private struct State {
        var running = 0
        var perTenant: [String: Int] = [:]
        var queue: [Waiter] = []
        var nextID: UInt64 = 0
        /// Waits that timed out before they were queued.
        var expired: Set<UInt64> = []
    }
    private let state = Mutex(State())

    init(perTenant: Int = 2, total: Int = max(2, System.coreCount), queueTimeout: Duration = .seconds(2)) {
        self.perTenant = perTenant
        self.total = total
        self.queueTimeout = queueTimeout
    }

    /// Runs `work` once admitted, on a thread of its own; throws a 429 or 503 `Problem` when no slot came in time.
    func run<T: Sendable>(tenant: String, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await admit(tenant)
        defer { leave(tenant) }
        return try await NIOThreadPool.singleton.runIfActive(work)
    }

    private func fits(_ s: State, _ tenant: String) -> Bool {
        s.running < total && s.perTenant[tenant, default: 0] < perTenant
    }

    private func admit(_ tenant: String) async throws {
        let id = state.withLock { s -> UInt64? in
            if s.queue.isEmpty, fits(s, tenant) {
                s.running += 1
                s.perTenant[tenant, default: 0] += 1
                return nil
            }
            s.nextID += 1
            return s.nextID
        }
        guard let id else { return }
        let admitted = await withTaskGroup(of: Bool?.self) { group in
            group.addTask { [queueTimeout] in
                // Cancelled once admitted: only a real timeout expires the wait.
                guard (try? await Task.sleep(for: queueTimeout)) != nil else { return nil }
                self.expire(id)
                return nil
            }
            let admitted = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let late = state.withLock { s -> Bool in
                    if s.expired.remove(id) != nil { return true }
                    s.queue.append(Waiter(id: id, tenant: tenant, continuation: c))
                    return false
                }
                if late { c.resume(returning: false) } else { promote() }
            }
            group.cancelAll()
            return admitted
        }
        guard admitted else {
            let ownFault = state.withLock { $0.perTenant[tenant, default: 0] >= perTenant }
            if ownFault {
                throw Problem(.tooManyRequests, "this tenant already runs \(perTenant) compilations or simulations; retry shortly",
                              retryAfter: 1)
            }
            throw Problem(.unavailable, "the server is busy compiling; retry shortly", retryAfter: 2)
        }
    }

    /// Admits queued requests, oldest first among those whose tenant has a free slot.
    private func promote() {
        var ready: [CheckedContinuation<Bool, Never>] = []
        state.withLock { s in
            var i = 0
            while i < s.queue.count, s.running < total {
                if s.perTenant[s.queue[i].tenant, default: 0] < perTenant {
                    let w = s.queue.remove(at: i)
                    s.running += 1
                    s.perTenant[w.tenant, default: 0] += 1
                    ready.append(w.continuation)
                } else {
                    i += 1
                }
            }
        }
        for c in ready { c.resume(returning: true) }
    }

    private func expire(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            guard let i = s.queue.firstIndex(where: { $0.id == id }) else {
                if s.nextID >= id, !s.queue.contains(where: { $0.id == id }) { s.expired.insert(id) }
                return nil
            }
            return s.queue.remove(at: i).continuation
        }
        waiter?.resume(returning: false)
    }

    private func leave(_ tenant: String) {
        state.withLock { s in
            s.running -= 1
            s.perTenant[tenant, default: 1] -= 1
            if s.perTenant[tenant] == 0 { s.perTenant[tenant] = nil }
        }
        promote()
    }
}
