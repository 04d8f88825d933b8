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

    /// A queued request: it joins the queue at once, and its continuation arrives an instant later (or, when its
    /// timeout beat it there, it is marked expired and its continuation is answered false on arrival).
    private struct Waiter {
        var id: UInt64
        var tenant: String
        var continuation: CheckedContinuation<Bool, Never>?
        var expired = false
    }
    private struct State {
        var running = 0
        var perTenant: [String: Int] = [:]
        var queue: [Waiter] = []
        var nextID: UInt64 = 0
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
            s.queue.append(Waiter(id: s.nextID, tenant: tenant))
            return s.nextID
        }
        guard let id else { return }
        let admitted = await withTaskGroup(of: Void.self) { group in
            group.addTask { [queueTimeout] in
                // Cancelled once admitted: only a real timeout expires the wait.
                guard (try? await Task.sleep(for: queueTimeout)) != nil else { return }
                self.expire(id)
            }
            let admitted = await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                let expired = state.withLock { s -> Bool in
                    guard let i = s.queue.firstIndex(where: { $0.id == id }) else { return true }
                    if s.queue[i].expired {
                        s.queue.remove(at: i)
                        return true
                    }
                    s.queue[i].continuation = c
                    return false
                }
                if expired { c.resume(returning: false) } else { promote() }
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
                if let c = s.queue[i].continuation, s.perTenant[s.queue[i].tenant, default: 0] < perTenant {
                    let w = s.queue.remove(at: i)
                    s.running += 1
                    s.perTenant[w.tenant, default: 0] += 1
                    ready.append(c)
                } else {
                    i += 1
                }
            }
        }
        for c in ready { c.resume(returning: true) }
    }

    /// Gives up on queued request `id` (nothing when it was admitted meanwhile).
    private func expire(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
            guard let i = s.queue.firstIndex(where: { $0.id == id }) else { return nil }
            guard let c = s.queue[i].continuation else {
                s.queue[i].expired = true  // its continuation is answered when it arrives
                return nil
            }
            s.queue.remove(at: i)
            return c
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
