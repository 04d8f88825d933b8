import FlowVM

/// How the outbox retries: exponential backoff with jitter, a connector's "retry after", and a dead letter
/// after `maxAttempts`.
public struct DeliveryPolicy: Sendable, Hashable {
    public var maxAttempts: Int
    public var baseDelay: Int64
    public var maxDelay: Int64
    /// How long a claimed delivery stays with its worker before another may take it over (seconds).
    public var lease: Int64

    public init(maxAttempts: Int = 8, baseDelay: Int64 = 2, maxDelay: Int64 = 3600, lease: Int64 = 60) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.lease = lease
    }
}

/// The lifecycle of one outbox delivery, as a pure function of an attempt's outcome.
public enum DeliveryMachine {
    public enum Action: Sendable, Hashable {
        /// Done: store the result (and, for a connector action, hand it to the waiting flow).
        case complete(Value)
        /// Try again at this time.
        case retry(at: Timestamp, error: ConnectorError)
        /// Give up: the delivery is dead-lettered and visible; the flow gets the failure (its `code` as `error.reason`).
        case deadLetter(error: ConnectorError)
    }

    /// Decides what follows attempt number `attempt` (1-based). `random` in 0..<1 spreads retries (jitter).
    public static func next(attempt: Int, outcome: Result<Value, ConnectorError>, now: Timestamp, policy: DeliveryPolicy,
                            random: Double) -> Action {
        switch outcome {
        case .success(let v):
            return .complete(v)
        case .failure(let e):
            guard e.retryable else { return .deadLetter(error: e) }
            guard attempt < policy.maxAttempts else {
                return .deadLetter(error: ConnectorError(code: e.code, message: "\(e.message) (gave up after \(attempt) attempts)", retryable: false))
            }
            return .retry(at: now.adding(seconds: delay(attempt: attempt, retryAfter: e.retryAfter, policy: policy, random: random)), error: e)
        }
    }

    /// Seconds before the next attempt: the connector's retry-after when given, else base·2^(attempt-1) capped at
    /// `maxDelay`, with "equal jitter" (half fixed, half random) so retries of a burst spread out.
    public static func delay(attempt: Int, retryAfter: Int64?, policy: DeliveryPolicy, random: Double) -> Int64 {
        if let retryAfter, retryAfter >= 0 { return min(retryAfter, policy.maxDelay) }
        let exponent = min(attempt - 1, 30)
        let backoff = min(policy.baseDelay << Int64(exponent), policy.maxDelay)
        let half = backoff / 2
        return half + Int64((Double(backoff - half) * min(max(random, 0), 1)).rounded(.down))
    }
}
