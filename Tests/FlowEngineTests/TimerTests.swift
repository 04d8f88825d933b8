import FlowEngine
import FlowStore
import FlowVM
import FlowlineTestKit
import Testing

/// Thousands of waits of different lengths on a controllable clock: every one fires, in order per
/// conversation, none early, none twice.
@Suite struct TimerTests {
    static let flow = """
        flow: timers
        trigger: { channel: api }
        start: w1
        blocks:
          w1:
            wait: { until: "{{ date_add(now(), split(message.text, ' ')[0]) }}" }
            next: t1
          t1:
            text: "1"
            next: w2
          w2:
            wait: { until: "{{ date_add(now(), split(message.text, ' ')[1]) }}" }
            next: t2
          t2:
            text: "2"
            next: w3
          w3:
            wait: { until: "{{ date_add(now(), split(message.text, ' ')[2]) }}" }
            next: t3
          t3:
            end: "3"
        """

    @Test(arguments: Backend.available)
    func thousandsOfWaitsFireInOrderNeverEarlyNeverTwice(_ backend: Backend) async throws {
        let store = try await backend.makeStore()
        let clock = TestClock()
        let start = clock.now
        let channel = RecordingChannel()
        var config = Engine.Configuration()
        config.turnBatch = 64
        config.deliveryBatch = 64
        let engine = Engine(store: store, connectors: ConnectorRegistry([channel]), configuration: config, clock: { clock.now })
        try await store.ensureTenant(id: "t1", name: "t1")
        try await engine.publish(tenant: "t1", program: try Flows.compile(Self.flow), source: Self.flow)

        var generator = SystemRandomNumberGenerator()
        let conversations = 1000
        var deadlines: [String: [Int64]] = [:]  // contact → absolute deadlines in seconds after start
        for i in 0..<conversations {
            let d = (0..<3).map { _ in Int64.random(in: 1...100, using: &generator) }
            deadlines["c\(i)"] = [d[0], d[0] + d[1], d[0] + d[1] + d[2]]
            _ = try await engine.ingest(inbound("\(d[0])s \(d[1])s \(d[2])s", from: "c\(i)", id: "m\(i)"))
        }
        var elapsed: Int64 = 0
        while elapsed <= 300 {
            try await engine.drain()
            for (contact, ds) in deadlines {
                let due = ds.filter { $0 <= elapsed }.count
                let sent = channel.texts(to: contact)
                if sent != Array(["1", "2", "3"].prefix(due)) {
                    Issue.record("at +\(elapsed)s \(contact) (deadlines \(ds)) has \(sent)")
                    await store.close()
                    return
                }
            }
            let step = Int64.random(in: 1...9, using: &generator)
            elapsed += step
            clock.set(start.adding(seconds: elapsed))
        }
        // The clock is now past every deadline (at most 300 s): the last timers fire on this pass.
        try await engine.drain()
        #expect(channel.count == conversations * 3)
        #expect(channel.duplicates == 0)
        #expect(try await store.conversations(tenant: "t1", status: .ended, contact: nil).count == conversations)
        // Each timer turn is traced at its own deadline.
        let sample = try await store.conversations(tenant: "t1", status: nil, contact: "c0")[0]
        let timerTimes = try await store.traces(conversation: sample.id, tenant: "t1").compactMap { t -> String? in
            t.event["kind"] == "timer" ? t.event["at"].text : nil
        }
        #expect(timerTimes == deadlines["c0"]!.map { start.adding(seconds: $0).iso8601 })
        await store.close()
    }
}
