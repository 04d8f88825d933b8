import FlowEngine
import FlowVM
import Foundation
import Logging

/// The schema: one list of migrations per dialect, applied in order and recorded in `flowline_schema`.
extension SQLStore {
    // MARK: Migrations

    /// Schema versions, in order; a version is never edited once released, only followed by a new one.
    static func migrations(_ d: SQLDialect) -> [[String]] {
        let blob = d == .postgres ? "BYTEA" : "BLOB"
        let serial = d == .postgres ? "BIGSERIAL PRIMARY KEY" : "INTEGER PRIMARY KEY AUTOINCREMENT"
        return [[
            "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE programs (hash TEXT PRIMARY KEY, name TEXT NOT NULL, bytecode \(blob) NOT NULL, created_at BIGINT NOT NULL)",
            """
            CREATE TABLE flow_versions (tenant_id TEXT NOT NULL REFERENCES tenants(id), flow TEXT NOT NULL, version BIGINT NOT NULL,
              program_hash TEXT NOT NULL REFERENCES programs(hash), source TEXT NOT NULL, trigger_channel TEXT,
              keywords TEXT NOT NULL, published_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, flow, version))
            """,
            """
            CREATE TABLE contacts (tenant_id TEXT NOT NULL, channel TEXT NOT NULL, address TEXT NOT NULL, name TEXT,
              created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, channel, address))
            """,
            """
            CREATE TABLE conversations (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, channel TEXT NOT NULL,
              channel_kind TEXT NOT NULL, contact TEXT NOT NULL, flow TEXT NOT NULL, program_hash TEXT NOT NULL,
              continuation \(blob), status TEXT NOT NULL, wait_kind TEXT, wait_key TEXT, wake_at BIGINT, due_at BIGINT,
              step BIGINT NOT NULL DEFAULT 0, row_version BIGINT NOT NULL DEFAULT 0, failure TEXT,
              created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE UNIQUE INDEX conversations_open ON conversations (tenant_id, channel, contact) WHERE status IN ('active', 'waiting', 'handoff')",
            "CREATE INDEX conversations_due ON conversations (due_at) WHERE due_at IS NOT NULL",
            "CREATE INDEX conversations_wait_key ON conversations (tenant_id, wait_key) WHERE wait_key IS NOT NULL",
            "CREATE INDEX conversations_tenant ON conversations (tenant_id, status)",
            """
            CREATE TABLE events (seq \(serial), tenant_id TEXT NOT NULL, channel TEXT NOT NULL, channel_kind TEXT,
              contact TEXT, provider_id TEXT, conversation_id TEXT, kind TEXT NOT NULL, body TEXT NOT NULL,
              received_at BIGINT NOT NULL, processed_at BIGINT, disposition TEXT)
            """,
            "CREATE UNIQUE INDEX events_provider ON events (tenant_id, channel, provider_id) WHERE provider_id IS NOT NULL",
            "CREATE INDEX events_pending ON events (conversation_id, seq) WHERE processed_at IS NULL",
            "CREATE INDEX events_reroute ON events (seq) WHERE disposition = 'reroute' AND processed_at IS NULL",
            """
            CREATE TABLE outbox (id \(serial), tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
              idempotency_key TEXT NOT NULL UNIQUE, effect_id BIGINT NOT NULL, kind TEXT NOT NULL, action TEXT NOT NULL,
              payload TEXT NOT NULL, state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL,
              lease_until BIGINT, last_error TEXT, result TEXT, created_at BIGINT NOT NULL, completed_at BIGINT)
            """,
            "CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending'",
            "CREATE INDEX outbox_conversation ON outbox (conversation_id, id) WHERE state = 'pending'",
            """
            CREATE TABLE messages (id \(serial), tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
              direction TEXT NOT NULL, text TEXT NOT NULL, extra TEXT NOT NULL, at BIGINT NOT NULL)
            """,
            "CREATE INDEX messages_conversation ON messages (conversation_id, id)",
            """
            CREATE TABLE traces (id \(serial), tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, event TEXT NOT NULL,
              visited TEXT NOT NULL, effects TEXT NOT NULL, wait TEXT NOT NULL, status TEXT NOT NULL, at BIGINT NOT NULL)
            """,
            "CREATE INDEX traces_conversation ON traces (conversation_id, id)",
            "CREATE INDEX traces_at ON traces (at)",
        ], [
            """
            CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, role TEXT NOT NULL, prefix TEXT NOT NULL UNIQUE,
              hash TEXT NOT NULL, label TEXT NOT NULL, created_at BIGINT NOT NULL, revoked_at BIGINT)
            """,
            """
            CREATE TABLE flow_drafts (tenant_id TEXT NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL, updated_at BIGINT NOT NULL,
              PRIMARY KEY (tenant_id, name))
            """,
            """
            CREATE TABLE channels (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
              callback_url TEXT, created_at BIGINT NOT NULL)
            """,
            "CREATE INDEX channels_tenant ON channels (tenant_id)",
            "ALTER TABLE conversations ADD COLUMN agent TEXT",
            """
            CREATE TABLE audit_log (id \(serial), tenant_id TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
              subject TEXT NOT NULL, at BIGINT NOT NULL)
            """,
        ], [
            // A channel's secret (the api channel's callback signing secret, a connector's credentials), sealed by SecretBox.
            "ALTER TABLE channels ADD COLUMN secret TEXT",
        ], [
            // A channel's settings that are not secret (a WhatsApp channel's phone number id), as JSON.
            "ALTER TABLE channels ADD COLUMN config TEXT",
        ], [
            // What became of each message sent through a provider that reports it (WhatsApp: sent, delivered, read,
            // failed with a code). A status may arrive before the send's answer, so the conversation may be filled later.
            // `fallback` is what to send instead if the provider reports the window closed after all (JSON).
            """
            CREATE TABLE message_statuses (channel TEXT NOT NULL, provider_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
              conversation_id TEXT, status TEXT NOT NULL, error_code TEXT, updated_at BIGINT NOT NULL, fallback TEXT,
              PRIMARY KEY (channel, provider_id))
            """,
            "CREATE INDEX message_statuses_conversation ON message_statuses (conversation_id)",
        ], [
            // Turns run outside any transaction: a claimed conversation is leased until this instant (ms), so no
            // other worker runs it meanwhile, and a worker that died only delays it until then.
            "ALTER TABLE conversations ADD COLUMN lease_until BIGINT",
        ], [
            // A WhatsApp contact keyed by business-scoped user id may also have a phone number (`wa_id`); replies
            // address both, and the Cloud API prefers the phone.
            "ALTER TABLE contacts ADD COLUMN phone TEXT",
        ], [
            // The audit log is read through the API (newest first, filtered): the request each entry came from, and an
            // index for a tenant's pages.
            "ALTER TABLE audit_log ADD COLUMN request_id TEXT",
            "CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id)",
        ], [
            // People who sign in, their role in each tenant, their browsers' sessions (by the hash of the cookie), the
            // single-use links they are sent (by the hash of the token), and failed sign-ins by email and by address.
            "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, password_hash TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE TABLE memberships (user_id TEXT NOT NULL, tenant_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (user_id, tenant_id))",
            """
            CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, tenant_id TEXT NOT NULL, csrf_hash TEXT NOT NULL,
              created_at BIGINT NOT NULL, last_seen_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, revoked_at BIGINT)
            """,
            "CREATE INDEX sessions_user ON sessions (user_id)",
            """
            CREATE TABLE links (hash TEXT PRIMARY KEY, kind TEXT NOT NULL, tenant_id TEXT, email TEXT, role TEXT, user_id TEXT,
              expires_at BIGINT, used_at BIGINT, created_at BIGINT NOT NULL)
            """,
            "CREATE TABLE sign_in_failures (key TEXT PRIMARY KEY, failures BIGINT NOT NULL, locked_until BIGINT, updated_at BIGINT NOT NULL)",
        ], [
            // What a link carries beyond its columns: a single sign-on's nonce, PKCE verifier and where to return.
            "ALTER TABLE links ADD COLUMN detail TEXT",
            // A queue restricted to named agents (people or keys): only they, and supervisors and admins, work it.
            "CREATE TABLE queue_agents (tenant_id TEXT NOT NULL, queue TEXT NOT NULL, agent_id TEXT NOT NULL, PRIMARY KEY (tenant_id, queue, agent_id))",
        ], [
            // A rotated signing secret, sealed, that still signs beside the new one until its time (receivers switch
            // without a callback failing their check).
            "ALTER TABLE channels ADD COLUMN previous_secret TEXT",
            "ALTER TABLE channels ADD COLUMN previous_secret_until BIGINT",
        ], [
            // Contacts as records: an id for the API, typed attributes (JSON), tags (JSON), consent on the channel,
            // opt-out, and when they last wrote. Existing contacts get an id here. Filters read two narrow tables,
            // kept beside the JSON in the same transaction, so a tag or an attribute comparison is an index range
            // rather than a scan of every contact's JSON.
            "ALTER TABLE contacts ADD COLUMN id TEXT",
            "ALTER TABLE contacts ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'",
            "ALTER TABLE contacts ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE contacts ADD COLUMN consent_at BIGINT",
            "ALTER TABLE contacts ADD COLUMN consent_source TEXT",
            "ALTER TABLE contacts ADD COLUMN opted_out_at BIGINT",
            "ALTER TABLE contacts ADD COLUMN updated_at BIGINT",
            "ALTER TABLE contacts ADD COLUMN last_seen_at BIGINT",
            // Bumped by every edit through the API, so two editors cannot overwrite each other unseen.
            "ALTER TABLE contacts ADD COLUMN revision BIGINT NOT NULL DEFAULT 0",
            d == .postgres
                ? "UPDATE contacts SET id = 'ct_' || substr(md5(random()::text || clock_timestamp()::text || address), 1, 20), updated_at = created_at"
                : "UPDATE contacts SET id = 'ct_' || lower(hex(randomblob(10))), updated_at = created_at",
            "CREATE UNIQUE INDEX contacts_id ON contacts (id)",
            "CREATE INDEX contacts_seen ON contacts (tenant_id, last_seen_at)",
            "CREATE INDEX contacts_created ON contacts (tenant_id, created_at, id)",
            "CREATE TABLE contact_tags (tenant_id TEXT NOT NULL, tag TEXT NOT NULL, contact_id TEXT NOT NULL, PRIMARY KEY (tenant_id, tag, contact_id))",
            "CREATE INDEX contact_tags_contact ON contact_tags (contact_id)",
            // One row per value: a list attribute has one per item, so "has this item" is the same lookup.
            """
            CREATE TABLE contact_attributes (tenant_id TEXT NOT NULL, contact_id TEXT NOT NULL, key TEXT NOT NULL,
              text_value TEXT, number_value DOUBLE PRECISION)
            """,
            "CREATE INDEX contact_attributes_contact ON contact_attributes (contact_id)",
            "CREATE INDEX contact_attributes_text ON contact_attributes (tenant_id, key, text_value)",
            "CREATE INDEX contact_attributes_number ON contact_attributes (tenant_id, key, number_value)",
            // Requests made once per `Idempotency-Key`: what was asked (a digest) and what it made.
            """
            CREATE TABLE idempotency_keys (tenant_id TEXT NOT NULL, scope TEXT NOT NULL, key TEXT NOT NULL, request_digest TEXT NOT NULL,
              result TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, scope, key))
            """,
        ], [
            // A tenant's settings: the words that opt a contact out and what they are told, how long ended
            // conversations keep their messages. No row: the defaults.
            """
            CREATE TABLE tenant_settings (tenant_id TEXT PRIMARY KEY, opt_out_words TEXT, opt_out_reply TEXT, opt_out_reply_set BIGINT NOT NULL DEFAULT 0,
              message_retention_days BIGINT, updated_at BIGINT NOT NULL)
            """,
            "CREATE INDEX conversations_ended ON conversations (tenant_id, updated_at) WHERE status = 'ended'",
            "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
            // Saved contact filters (the list's query as JSON), evaluated when used.
            """
            CREATE TABLE segments (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, filter TEXT NOT NULL,
              created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)
            """,
            "CREATE UNIQUE INDEX segments_name ON segments (tenant_id, name)",
        ], [
            // Campaigns: a flow sent to a filter's contacts on a channel, paced by a token bucket kept on the row
            // (thousandths of a conversation; the rate in thousandths per second) and leased by one worker at a time.
            """
            CREATE TABLE campaigns (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, flow TEXT NOT NULL,
              channel TEXT NOT NULL, channel_kind TEXT NOT NULL, segment_id TEXT, filter TEXT NOT NULL, variables TEXT NOT NULL,
              starts_at BIGINT NOT NULL, rate_milli BIGINT NOT NULL, daily_limit BIGINT, if_busy TEXT NOT NULL, status TEXT NOT NULL, failure TEXT,
              total BIGINT NOT NULL DEFAULT 0, tokens_milli BIGINT NOT NULL DEFAULT 0, refilled_at BIGINT, next_at BIGINT,
              lease_until BIGINT, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, finished_at BIGINT)
            """,
            "CREATE INDEX campaigns_due ON campaigns (next_at) WHERE status IN ('scheduled', 'running')",
            "CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at, id)",
            // One row per contact a campaign reaches: queued, then started (with its conversation, marked in the
            // start's own transaction) or skipped with a reason.
            """
            CREATE TABLE campaign_targets (campaign_id TEXT NOT NULL, tenant_id TEXT NOT NULL, channel TEXT NOT NULL,
              contact_id TEXT NOT NULL, address TEXT NOT NULL, status TEXT NOT NULL, reason TEXT, conversation_id TEXT,
              next_at BIGINT NOT NULL, started_at BIGINT, PRIMARY KEY (campaign_id, contact_id))
            """,
            "CREATE INDEX campaign_targets_queued ON campaign_targets (campaign_id, next_at, contact_id) WHERE status = 'queued'",
            "CREATE INDEX campaign_targets_started ON campaign_targets (tenant_id, channel, started_at) WHERE status = 'started'",
            "CREATE INDEX campaign_targets_contact ON campaign_targets (contact_id)",
        ], [
            // A flow's inbound webhook: found by its token's SHA-256 (the token itself is shown once and never
            // stored), one per flow, with the channel its contacts are on and an optional signing secret, sealed.
            """
            CREATE TABLE flow_hooks (token_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, flow TEXT NOT NULL, channel TEXT NOT NULL,
              signing_secret TEXT, created_at BIGINT NOT NULL)
            """,
            "CREATE UNIQUE INDEX flow_hooks_flow ON flow_hooks (tenant_id, flow)",
        ], [
            // A published flow's `trigger.schedule`: the spec its version states and its next occurrence, a durable
            // timer the engines poll (leased; fired by compare-and-set on next_at), and what its last firing did.
            """
            CREATE TABLE schedules (tenant_id TEXT NOT NULL, flow TEXT NOT NULL, version BIGINT NOT NULL, spec TEXT NOT NULL,
              next_at BIGINT, lease_until BIGINT, last_occurrence BIGINT, last_campaign TEXT, last_error TEXT,
              missed BIGINT NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL, PRIMARY KEY (tenant_id, flow))
            """,
            "CREATE INDEX schedules_due ON schedules (next_at) WHERE next_at IS NOT NULL",
            // Whether a flow with no keywords catches its channel's other messages: not when a schedule or a webhook
            // starts it (versions published before say yes, as they did).
            "ALTER TABLE flow_versions ADD COLUMN catch_all BIGINT NOT NULL DEFAULT 1",
        ]]
    }

    /// The schema version this build writes.
    public static var schemaVersion: Int { migrations(.sqlite).count }

    /// Applies the migrations the database lacks, up to `version` (the latest unless a test stops short of it, to
    /// see what a later step does to data an earlier schema held).
    public func migrate() async throws { try await migrate(through: SQLStore.schemaVersion) }

    public func migrate(through version: Int) async throws {
        let steps = Array(SQLStore.migrations(driver.dialect).prefix(version))
        try await driver.transaction { db in
            if self.postgres {
                // Several processes may start at once: one migrates, the others wait and then find nothing to do.
                try await db.execute("SELECT pg_advisory_xact_lock(7346289)")
            }
            try await db.execute("CREATE TABLE IF NOT EXISTS flowline_schema (version BIGINT NOT NULL)")
            let current = Int(try await db.execute("SELECT MAX(version) AS v FROM flowline_schema").first?.int("v") ?? 0)
            guard current <= SQLStore.schemaVersion else {
                throw StoreError(.schemaTooNew, "the database has schema version \(current); this Flowline knows up to \(SQLStore.schemaVersion)")
            }
            for version in min(current, steps.count)..<steps.count {
                for statement in steps[version] { try await db.execute(statement) }
                try await db.execute("INSERT INTO flowline_schema (version) VALUES ($1)", .int(Int64(version + 1)))
                self.logger.info("migrated database schema", metadata: ["version": "\(version + 1)"])
            }
        }
    }
}
