import Testing

/// Polls `check` until it answers, or fails the test after `seconds`: a wait on a condition with a deadline, never a
/// bare sleep.
public func eventually<T>(_ what: String, seconds: Double = 10, _ check: () async throws -> T?) async throws -> T {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if let value = try await check() { return value }
        try await Task.sleep(for: .milliseconds(100))
    }
    Issue.record("timed out waiting until \(what)")
    throw CancellationError()
}
