import Synchronization

/// Wakes a sleeping work loop early. A signal sent while nobody sleeps is kept (once), so none is lost between a
/// pass that found nothing and the sleep after it; a sleep ends at the signal, at its timeout, or on cancellation.
///
/// It replaces an `AsyncStream` raced against a sleep: cancelling the task that iterates a stream finishes the
/// stream, so after the first timeout every later wait returned at once and an idle engine spun on the database.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var waiter: (id: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    /// Wakes the sleeper, or the next one to sleep.
    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let w = s.waiter else {
                s.pending = true
                return nil
            }
            s.waiter = nil
            return w.continuation
        }
        waiter?.resume()
    }

    /// Sleeps until signalled or `timeout` passes (or the task is cancelled). One sleeper at a time.
    func wait(timeout: Duration) async {
        let id = state.withLock { s -> UInt64? in
            if s.pending {
                s.pending = false
                return nil
            }
            s.nextID += 1
            return s.nextID
        }
        guard let id else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.release(id)
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { s -> Bool in
                        if s.pending {
                            s.pending = false
                            return true
                        }
                        // Released (timed out or cancelled) before this registered: nothing to wait for.
                        if s.nextID != id { return true }
                        s.waiter = (id, c)
                        return false
                    }
                    if resumeNow { c.resume() }
                }
            } onCancel: {
                self.release(id)
            }
            group.cancelAll()
        }
    }

    /// Ends sleep `id` if it is still the current one.
    private func release(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.nextID == id { s.nextID += 1 }  // a late registration of `id` sees it was released
            guard let w = s.waiter, w.id == id else { return nil }
            s.waiter = nil
            return w.continuation
        }
        waiter?.resume()
    }
}
