import FlowEngine

/// The channel kinds every Flowline has, one line each. A kind is a folder beside this file with its driver.
public enum BuiltinChannels {
    public static let all: [any ChannelDriver] = [
        APIChannel(),
        WhatsAppChannel(),
        StripeChannel(),
        EmailChannel(),
        AIChannel(),
        N8NChannel(),
    ]
}
