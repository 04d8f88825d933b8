import FlowEngine
import FlowVM
import Testing

/// The rules the store applies to operators' requests and dead letters, without a database.
@Suite struct ConversationLifecycleTests {
    @Test func onlyAFailedConversationIsRetriedAndOnlyIfItsContactsSlotIsFree() {
        for status in ConversationStatus.allCases {
            let needs = ConversationLifecycle.needsOtherOpenCheck(.retry, status: status)
            #expect(needs == (status == .failed), "\(status)")
            let refusal = ConversationLifecycle.refusal(.retry, status: status, otherOpenConversation: false)
            #expect((refusal == nil) == (status == .failed), "\(status): \(String(describing: refusal))")
        }
        #expect(ConversationLifecycle.refusal(.retry, status: .failed, otherOpenConversation: true)
                == EngineError(.conflict, "the contact has another open conversation"))
        #expect(!ConversationLifecycle.needsOtherOpenCheck(.cancel, status: .failed))
    }

    @Test func anythingButAnEndedConversationCanBeCancelled() {
        for status in ConversationStatus.allCases {
            let refusal = ConversationLifecycle.refusal(.cancel, status: status, otherOpenConversation: true)
            #expect((refusal == nil) == (status != .ended), "\(status)")
        }
    }

    @Test func messagesResultsAndHandBacksAreAlwaysStoredOnceAConversationHasStarted() {
        let bodies: [EventBody] = [.message(InboundMessage(text: "hi")), .handback, .external(name: "stripe.paid", key: "cs_1", payload: [:])]
        for body in bodies {
            for status in ConversationStatus.allCases where status != .scheduled {
                #expect(ConversationLifecycle.refusal(body, status: status, otherOpenConversation: true) == nil, "\(body.kind) \(status)")
            }
            // Before its time, nothing but a cancel reaches a scheduled conversation: it would start it early.
            #expect(ConversationLifecycle.refusal(body, status: .scheduled, otherOpenConversation: false)
                    == EngineError(.conflict, "the conversation has not started yet"))
        }
    }

    @Test func aDeadActionTellsTheFlowAndADeadMessageFailsTheConversation() {
        let e = ConnectorError(code: "whatsapp_131026", message: "the message cannot be delivered to this number", retryable: false)
        #expect(ConversationLifecycle.deadLetter(.perform, error: e)
                == .failureToFlow(code: "whatsapp_131026", message: "the message cannot be delivered to this number"))
        #expect(ConversationLifecycle.deadLetter(.send, error: e)
                == .failConversation(reason: "delivery failed: whatsapp_131026: the message cannot be delivered to this number"))
    }
}
