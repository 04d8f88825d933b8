import AsyncHTTPClient
import FlowConnector
import FlowVM
import Foundation
import NIOCore

/// A complete custom connector, to copy: `crm.lookup` finds a customer in a CRM by phone or email.
///
/// The CRM answers `GET {baseURL}/customers?phone=…` (or `?email=…`) with `{"id", "name", "tier"}`, or 404
/// when it has no such customer; it wants `Authorization: Bearer <API key>`. In a flow:
///
/// ```yaml
/// lookup:
///   use: crm.lookup
///   with: { phone: "{{ contact.phone }}" }
///   save: customer
///   on_error: human
///   next:
///     - when: customer.found and customer.tier == "gold"
///       goto: vip
///     - goto: regular
/// ```
public struct CRMConnector: Connector {
    public let baseURL: String
    private let apiKey: String

    /// - Parameters:
    ///   - baseURL: where the CRM's API lives (a loopback fake in tests).
    ///   - apiKey: sent as a bearer token; never logged, never in an error.
    public init(baseURL: String, apiKey: String) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
    }

    public var definitions: [ActionDefinition] { Self.actions }

    /// `crm.lookup`, with the JSON Schemas of its parameters and result.
    public static let actions = [
        ActionDefinition(
            name: "crm.lookup",
            summary: "Find a customer in the CRM by phone or email",
            parameters: [
                "type": "object", "additionalProperties": false,
                "properties": ["phone": ["type": "string", "minLength": 3], "email": ["type": "string", "minLength": 3]],
            ],
            result: [
                "type": "object",
                "properties": [
                    "found": ["type": "boolean"], "id": ["type": "string"], "name": ["type": "string"], "tier": ["type": "string"],
                ],
            ]),
    ]

    public func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard action == "crm.lookup" else {
            throw ConnectorError(code: "unknown_action", message: "crm has no action \(action)", retryable: false)
        }
        var query = URLComponents()
        if case .string(let phone) = parameters["phone"], !phone.isEmpty {
            query.queryItems = [URLQueryItem(name: "phone", value: phone)]
        } else if case .string(let email) = parameters["email"], !email.isEmpty {
            query.queryItems = [URLQueryItem(name: "email", value: email)]
        } else {
            throw ConnectorError(code: "invalid_parameters", message: "crm.lookup needs a phone or an email", retryable: false)
        }
        var request = HTTPClientRequest(url: baseURL + "/customers?" + (query.percentEncodedQuery ?? ""))
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: context.idempotencyKey)

        let (response, body) = try await context.send(request, to: "the CRM")
        switch response.status.code {
        case 200:
            guard let customer = Value(json: String(buffer: body)), case .map = customer else {
                throw ConnectorError(code: "bad_response", message: "the CRM answered something that is not a JSON object", retryable: false)
            }
            return ["found": true, "id": customer["id"], "name": customer["name"], "tier": customer["tier"]]
        case 404:
            return ["found": false, "id": .null, "name": .null, "tier": .null]
        case 429, 500...:
            let wait = response.headers.first(name: "Retry-After").flatMap { Int64($0) }
            throw ConnectorError(code: "crm_\(response.status.code)", message: "the CRM answered \(response.status.code)", retryable: true,
                                 retryAfter: wait)
        default:
            // 401 and 403 are a wrong key: retrying will not help, the flow's on_error should.
            throw ConnectorError(code: "crm_\(response.status.code)", message: "the CRM answered \(response.status.code)", retryable: false)
        }
    }
}
