import FlowEngine
import Testing

@Suite struct TriggerMatcherTests {
    let flows = [
        // Sorts first, has no keywords, but a schedule starts it: never the catch-all.
        PublishedFlow(tenant: "t", name: "a-reminder", version: 1, programHash: "r", triggerChannel: "whatsapp", keywords: [], catchAll: false),
        PublishedFlow(tenant: "t", name: "booking", version: 1, programHash: "a", triggerChannel: "whatsapp", keywords: ["agendar", "consulta"]),
        PublishedFlow(tenant: "t", name: "catch-all", version: 1, programHash: "b", triggerChannel: "whatsapp", keywords: []),
        PublishedFlow(tenant: "t", name: "web", version: 1, programHash: "c", triggerChannel: "api", keywords: ["agendar"]),
    ]

    @Test func keywordsMatchWholeWordsIgnoringCaseAndAccents() {
        #expect(TriggerMatcher.match(text: "Quero AGENDAR uma Consulta!", channelKind: "whatsapp", flows: flows)?.name == "booking")
        #expect(TriggerMatcher.match(text: "consultá", channelKind: "whatsapp", flows: flows)?.name == "booking")
        #expect(TriggerMatcher.match(text: "reagendar", channelKind: "whatsapp", flows: flows)?.name == "catch-all",
                "part of a word is no match")
    }

    @Test func channelsSeparateFlows() {
        #expect(TriggerMatcher.match(text: "agendar", channelKind: "api", flows: flows)?.name == "web")
        #expect(TriggerMatcher.match(text: "hello", channelKind: "api", flows: flows) == nil)
        #expect(TriggerMatcher.match(text: "agendar", channelKind: "email", flows: flows) == nil)
    }

    /// A flow that a schedule or a webhook starts is not started by a message that matches no keyword.
    @Test func scheduledFlowsAreNotCatchAlls() {
        #expect(TriggerMatcher.match(text: "ok, see you", channelKind: "whatsapp", flows: flows)?.name == "catch-all")
        #expect(TriggerMatcher.match(text: "ok", channelKind: "whatsapp", flows: Array(flows.prefix(1))) == nil)
    }
}
