-- People who sign in to the web (callcenter/auth/). A role decides what each
-- may see and do; an agent user is linked to the call distributor's agent (and
-- so to that agent's SIP account); an agent user without a link sees no calls.
-- Passwords are argon2 hashes, never text.
CREATE TABLE users (
    id                  bigserial PRIMARY KEY,
    username            text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    display_name        text NOT NULL DEFAULT '',
    role                text NOT NULL CHECK (role IN ('agent', 'qa', 'supervisor', 'admin')),
    agent_id            text UNIQUE REFERENCES agents(id) ON DELETE SET NULL,
    password_hash       text NOT NULL,
    language            text NOT NULL DEFAULT 'zh-CN' CHECK (language IN ('zh-CN', 'en')),
    disabled            boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text NOT NULL,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz
);

-- Signed-in sessions, server side: the cookie holds a random token, the table
-- its SHA-256 only (a copy of the table signs nobody in). Deleting a user's rows
-- signs them out everywhere (role change, disabling, password change).
CREATE TABLE web_sessions (
    token_hash   text PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    data         jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ip           text,
    user_agent   text
);
CREATE INDEX web_sessions_user_idx ON web_sessions (user_id);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

-- Who did what, when, from where: every recording download, every change of a
-- ticket, a verdict, a user or an agent's state made in the web, and every
-- sign-in (failed ones too). Append only.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     bigint REFERENCES users(id) ON DELETE SET NULL,
    username    text,
    role        text,
    action      text NOT NULL,
    target_kind text,
    target_id   text,
    details     jsonb NOT NULL DEFAULT '{}',
    ip          text,
    user_agent  text
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_target_idx ON audit_log (target_kind, target_id);
