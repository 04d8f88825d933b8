import FlowEngine
import FlowVM
import Foundation

/// People: accounts, memberships, sessions, single-use links and failed sign-ins.
extension SQLStore: PeopleRecords {
    public func userCount() async throws -> Int {
        try await driver.transaction { db in Int(try await db.execute("SELECT COUNT(*) AS n FROM users").first?.int("n") ?? 0) }
    }

    public func insertUser(_ u: UserRecord, memberships: [Membership]) async throws -> Bool {
        try await driver.transaction { db in
            guard try await db.execute("SELECT id FROM users WHERE email = $1", .text(u.email)).isEmpty else { return false }
            try await db.execute("INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
                                 .text(u.id), .text(u.email), .text(u.name), .text(u.passwordHash), .int(u.createdAt.milliseconds))
            for m in memberships {
                try await db.execute("INSERT INTO memberships (user_id, tenant_id, role) VALUES ($1, $2, $3)", .text(u.id), .text(m.tenant), .text(m.role))
            }
            return true
        }
    }

    func user(_ r: SQLRow) -> UserRecord {
        UserRecord(id: r.text("id") ?? "", email: r.text("email") ?? "", name: r.text("name") ?? "", passwordHash: r.text("password_hash") ?? "",
                   createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0))
    }

    public func user(email: String) async throws -> UserRecord? {
        try await driver.transaction { db in try await db.execute("SELECT * FROM users WHERE email = $1", .text(email)).first.map(self.user) }
    }

    public func user(id: String) async throws -> UserRecord? {
        try await driver.transaction { db in try await db.execute("SELECT * FROM users WHERE id = $1", .text(id)).first.map(self.user) }
    }

    public func memberships(user: String) async throws -> [Membership] {
        try await driver.transaction { db in
            try await db.execute("SELECT tenant_id, role FROM memberships WHERE user_id = $1 ORDER BY tenant_id", .text(user)).map {
                Membership(tenant: $0.text("tenant_id") ?? "", role: $0.text("role") ?? "")
            }
        }
    }

    public func insertSession(_ s: SessionRecord) async throws {
        try await driver.transaction { db in
            try await db.execute(
                "INSERT INTO sessions (id_hash, user_id, tenant_id, csrf_hash, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                .text(s.idHash), .text(s.user), .text(s.tenant), .text(s.csrfHash), .int(s.createdAt.milliseconds), .int(s.lastSeenAt.milliseconds),
                .int(s.expiresAt.milliseconds))
        }
    }

    public func session(idHash: String) async throws -> SessionRecord? {
        try await driver.transaction { db in
            try await db.execute("SELECT * FROM sessions WHERE id_hash = $1", .text(idHash)).first.map { r in
                SessionRecord(idHash: r.text("id_hash") ?? "", user: r.text("user_id") ?? "", tenant: r.text("tenant_id") ?? "",
                              csrfHash: r.text("csrf_hash") ?? "", createdAt: Timestamp(milliseconds: r.int("created_at") ?? 0),
                              lastSeenAt: Timestamp(milliseconds: r.int("last_seen_at") ?? 0),
                              expiresAt: Timestamp(milliseconds: r.int("expires_at") ?? 0), revoked: r.int("revoked_at") != nil)
            }
        }
    }

    public func touchSession(idHash: String, at: Timestamp) async throws {
        try await driver.transaction { db in
            try await db.execute("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1", .text(idHash), .int(at.milliseconds))
        }
    }

    public func revokeSession(idHash: String) async throws {
        try await driver.transaction { db in
            try await db.execute("UPDATE sessions SET revoked_at = $2 WHERE id_hash = $1 AND revoked_at IS NULL", .text(idHash),
                                 .int(Timestamp(Date()).milliseconds))
        }
    }

    public func switchSession(idHash: String, tenant: String) async throws {
        try await driver.transaction { db in
            try await db.execute("UPDATE sessions SET tenant_id = $2 WHERE id_hash = $1", .text(idHash), .text(tenant))
        }
    }

    public func revokeSessions(user: String) async throws -> Int {
        try await driver.transaction { db in
            try await db.execute("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id_hash", .text(user),
                                 .int(Timestamp(Date()).milliseconds)).count
        }
    }

    public func insertLink(_ l: LinkRecord, at: Timestamp) async throws {
        try await driver.transaction { db in
            try await db.execute(
                """
                INSERT INTO links (hash, kind, tenant_id, email, role, user_id, expires_at, created_at, detail)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """,
                .text(l.hash), .text(l.kind), l.tenant.map(SQLValue.text) ?? .null, l.email.map(SQLValue.text) ?? .null,
                l.role.map(SQLValue.text) ?? .null, l.user.map(SQLValue.text) ?? .null, l.expiresAt.map { .int($0.milliseconds) } ?? .null,
                .int(at.milliseconds), l.detail.map(SQLValue.text) ?? .null)
        }
    }

    public func useLink(hash: String, kind: String, at: Timestamp) async throws -> LinkRecord? {
        try await driver.transaction { db in
            try await db.execute(
                """
                UPDATE links SET used_at = $3 WHERE hash = $1 AND kind = $2 AND used_at IS NULL AND (expires_at IS NULL OR expires_at > $3)
                RETURNING hash, kind, tenant_id, email, role, user_id, expires_at, detail
                """, .text(hash), .text(kind), .int(at.milliseconds)).first.map(self.link)
        }
    }

    public func link(hash: String, kind: String, at: Timestamp) async throws -> LinkRecord? {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT * FROM links WHERE hash = $1 AND kind = $2 AND used_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
                .text(hash), .text(kind), .int(at.milliseconds)).first.map(self.link)
        }
    }

    func link(_ r: SQLRow) -> LinkRecord {
        LinkRecord(hash: r.text("hash") ?? "", kind: r.text("kind") ?? "", tenant: r.text("tenant_id"), email: r.text("email"), role: r.text("role"),
                   user: r.text("user_id"), expiresAt: r.int("expires_at").map(Timestamp.init(milliseconds:)), detail: r.text("detail"))
    }

    public func members(tenant: String) async throws -> [Member] {
        try await driver.transaction { db in
            try await db.execute(
                "SELECT u.*, m.role FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.tenant_id = $1 ORDER BY u.email",
                .text(tenant)).map { Member(user: self.user($0), role: $0.text("role") ?? "") }
        }
    }

    /// The tenant's admins, their rows locked until the transaction ends (two admins demoting each other at once
    /// cannot both succeed).
    private func admins(_ tenant: String, _ db: any SQLExecutor) async throws -> Set<String> {
        Set(try await db.execute("SELECT user_id FROM memberships WHERE tenant_id = $1 AND role = 'admin'\(forUpdate)", .text(tenant))
            .compactMap { $0.text("user_id") })
    }

    public func setMembership(user: String, tenant: String, role: String) async throws -> MemberChange {
        try await driver.transaction { db in
            let admins = try await self.admins(tenant, db)
            if role != "admin", admins == [user] { return .lastAdmin }
            let updated = try await db.execute("UPDATE memberships SET role = $3 WHERE user_id = $1 AND tenant_id = $2 RETURNING user_id",
                                               .text(user), .text(tenant), .text(role))
            if updated.isEmpty {
                try await db.execute("INSERT INTO memberships (user_id, tenant_id, role) VALUES ($1, $2, $3)", .text(user), .text(tenant), .text(role))
            }
            return .done
        }
    }

    public func removeMembership(user: String, tenant: String) async throws -> MemberChange {
        try await driver.transaction { db in
            if try await self.admins(tenant, db) == [user] { return .lastAdmin }
            let removed = try await db.execute("DELETE FROM memberships WHERE user_id = $1 AND tenant_id = $2 RETURNING user_id", .text(user), .text(tenant))
            guard !removed.isEmpty else { return .notAMember }
            // Sessions in that tenant end with the membership.
            try await db.execute("UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND tenant_id = $2 AND revoked_at IS NULL", .text(user),
                                 .text(tenant), .int(Timestamp(Date()).milliseconds))
            return .done
        }
    }

    public func setPassword(user: String, hash: String) async throws {
        try await driver.transaction { db in
            try await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", .text(user), .text(hash))
        }
    }

    public func signInFailures(key: String) async throws -> (failures: Int, lockedUntil: Timestamp?) {
        try await driver.transaction { db in
            guard let r = try await db.execute("SELECT failures, locked_until FROM sign_in_failures WHERE key = $1", .text(key)).first else { return (0, nil) }
            return (Int(r.int("failures") ?? 0), r.int("locked_until").map(Timestamp.init(milliseconds:)))
        }
    }

    public func recordSignInFailure(key: String, lockedUntil: Timestamp?, at: Timestamp) async throws {
        try await driver.transaction { db in
            try await db.execute(
                """
                INSERT INTO sign_in_failures (key, failures, locked_until, updated_at) VALUES ($1, 1, $2, $3)
                ON CONFLICT (key) DO UPDATE SET failures = sign_in_failures.failures + 1, locked_until = $2, updated_at = $3
                """, .text(key), lockedUntil.map { .int($0.milliseconds) } ?? .null, .int(at.milliseconds))
        }
    }

    public func clearSignInFailures(key: String) async throws {
        try await driver.transaction { db in try await db.execute("DELETE FROM sign_in_failures WHERE key = $1", .text(key)) }
    }
}
