import FlowEngine
import FlowVM
import Testing

/// The delivery/retry lifecycle without any I/O.
@Suite struct DeliveryMachineTests {
    let now = Timestamp(milliseconds: 1_000_000)
    let policy = DeliveryPolicy(maxAttempts: 5, baseDelay: 2, maxDelay: 60)
    let retryable = ConnectorError(code: "unavailable", message: "503", retryable: true)

    @Test func successCompletes() {
        #expect(DeliveryMachine.next(attempt: 1, outcome: .success("ok"), now: now, policy: policy, random: 0.5) == .complete("ok"))
    }

    @Test func permanentFailuresAreDeadLetteredAtOnce() {
        let e = ConnectorError(code: "invalid", message: "bad number", retryable: false)
        guard case .deadLetter(let why) = DeliveryMachine.next(attempt: 1, outcome: .failure(e), now: now, policy: policy, random: 0) else {
            Issue.record("expected a dead letter")
            return
        }
        #expect(why == e, "the connector's own error, typed")
    }

    @Test func backoffGrowsExponentiallyWithJitterAndACap() {
        for attempt in 1...10 {
            let low = DeliveryMachine.delay(attempt: attempt, retryAfter: nil, policy: policy, random: 0)
            let high = DeliveryMachine.delay(attempt: attempt, retryAfter: nil, policy: policy, random: 0.999)
            let full = min(2 << (attempt - 1), 60)
            #expect(low == Int64(full / 2), "attempt \(attempt)")
            #expect(high <= Int64(full) && high >= low)
        }
        #expect(DeliveryMachine.delay(attempt: 3, retryAfter: nil, policy: policy, random: 0.5) == 6)
    }

    @Test func retryAfterIsHonouredButCapped() {
        #expect(DeliveryMachine.delay(attempt: 1, retryAfter: 30, policy: policy, random: 0) == 30)
        #expect(DeliveryMachine.delay(attempt: 1, retryAfter: 3600, policy: policy, random: 0) == 60)
        let e = ConnectorError(code: "rate", message: "429", retryable: true, retryAfter: 7)
        #expect(DeliveryMachine.next(attempt: 2, outcome: .failure(e), now: now, policy: policy, random: 0.9)
                == .retry(at: now.adding(seconds: 7), error: e))
    }

    @Test func givesUpAfterMaxAttempts() {
        guard case .retry = DeliveryMachine.next(attempt: 4, outcome: .failure(retryable), now: now, policy: policy, random: 0) else {
            Issue.record("attempt 4 of 5 retries")
            return
        }
        guard case .deadLetter(let why) = DeliveryMachine.next(attempt: 5, outcome: .failure(retryable), now: now, policy: policy, random: 0)
        else {
            Issue.record("attempt 5 of 5 gives up")
            return
        }
        #expect(why.code == retryable.code && why.message.hasSuffix("(gave up after 5 attempts)") && !why.retryable)
    }
}
