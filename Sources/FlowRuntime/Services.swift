import FlowEngine
import ServiceLifecycle
import Synchronization

/// Opens once, for everyone waiting: what a service waits on before it starts (the engine, until the database is
/// migrated). A wait ends false when the service group shuts down first.
public final class Gate: Sendable {
    private enum State {
        case closed([UInt64: CheckedContinuation<Bool, Never>])
        case open
    }

    private let state = Mutex(State.closed([:]))
    private let ids = Atomic<UInt64>(0)

    public init() {}

    public func open() {
        let waiting = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            guard case .closed(let w) = s else { return [] }
            s = .open
            return Array(w.values)
        }
        for c in waiting { c.resume(returning: true) }
    }

    /// True once open; false when the task is cancelled or the group shuts down before.
    public func wait() async -> Bool {
        let id = ids.add(1, ordering: .relaxed).newValue
        return await cancelWhenGracefulShutdown {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
                    let now: Bool? = self.state.withLock { s in
                        switch s {
                        case .open: return true
                        case .closed(var w):
                            if Task.isCancelled { return false }
                            w[id] = c
                            s = .closed(w)
                            return nil
                        }
                    }
                    if let now { c.resume(returning: now) }
                }
            } onCancel: {
                let c = self.state.withLock { s -> CheckedContinuation<Bool, Never>? in
                    guard case .closed(var w) = s, let c = w.removeValue(forKey: id) else { return nil }
                    s = .closed(w)
                    return c
                }
                c?.resume(returning: false)
            }
        }
    }
}

/// The engine as a service: it starts once `ready` opens, and a graceful shutdown lets the turns and deliveries in
/// flight finish, uncancelled (the store fails queries from a cancelled task), before it returns.
public struct EngineService: Service {
    public let engine: Engine
    public let ready: Gate

    public init(engine: Engine, ready: Gate) {
        self.engine = engine
        self.ready = ready
    }

    public func run() async throws {
        guard await ready.wait() else { return }
        await withGracefulShutdownHandler { await engine.run() } onGracefulShutdown: { engine.stop() }
    }
}
