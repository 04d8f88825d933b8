import FlowEngine
import FlowStore
import FlowVM

extension SQLStore.ChannelRecord {
    /// The channel's secret, opened; nil when it has none. Throws `EngineError(.secret)` (503 in the API) when the
    /// server has no key or its key does not open the secret.
    public func openSecret(_ box: SecretBox?) throws -> String? {
        guard let sealedSecret else { return nil }
        guard let box else { throw EngineError(.secret, "the channel's secret needs FLOWLINE_SECRET_KEY") }
        return try box.open(sealedSecret, context: secretContext)
    }

    /// The signing secret a rotation replaced, opened.
    public func openPreviousSecret(_ box: SecretBox?) throws -> String? {
        guard let previousSealedSecret else { return nil }
        guard let box else { throw EngineError(.secret, "the channel's secret needs FLOWLINE_SECRET_KEY") }
        return try box.open(previousSealedSecret, context: secretContext)
    }

    /// A service channel's credentials (WhatsApp's `verify_token`, `app_secret`, `access_token`; Stripe's
    /// `secret_key`, `webhook_secret`...), sealed together as JSON; an empty map when it has none.
    public func credentials(_ box: SecretBox?) throws -> Value {
        if sealedSecret == nil { return [:] }
        guard let text = try openSecret(box), let credentials = Value(json: text) else {
            throw EngineError(.secret, "the channel's credentials cannot be read")
        }
        return credentials
    }
}
