/// The HTTP API server's defaults. The server itself (Hummingbird, the builder API, webhooks) is built on top of
/// the engine; this target exists from the start so the package layout stays fixed.
public enum ServerDefaults {
    /// `flowline serve` listens here unless told otherwise.
    public static let host = "127.0.0.1"
    public static let port = 8080
    /// The embedded database used when no `--database` is given.
    public static let database = "sqlite:./flowline.db"
}
