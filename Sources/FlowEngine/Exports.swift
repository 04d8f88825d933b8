// The engine's users get the connector SDK with it: a connector written against `FlowConnector` plugs straight in.
@_exported import FlowConnector
