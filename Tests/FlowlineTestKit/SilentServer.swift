import NIOCore
import NIOPosix

/// A TCP server on loopback that accepts and then says nothing, or hangs up at once: a peer that hangs, or drops
/// the connection, for the tests of what a client does then. Close the channel when done.
public func silentServer(hangUp: Bool) async throws -> (any Channel, Int) {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelInitializer { child in
            if hangUp { child.close(promise: nil) }
            return child.eventLoop.makeSucceededVoidFuture()
        }
        .bind(host: "127.0.0.1", port: 0).get()
    return (channel, channel.localAddress!.port!)
}
