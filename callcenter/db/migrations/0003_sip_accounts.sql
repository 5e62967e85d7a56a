-- SIP accounts of agents whose phones register with Asterisk (callcenter/sip/).
-- The password is shown once and never stored: only the digest HA1
-- (md5 of username:realm:password), which Asterisk takes as
-- password_digest = md5:<ha1>. The HA1 opens the account in its realm: treat
-- it as a secret. Changes are announced on NOTIFY channel cc_agents.
CREATE TABLE sip_accounts (
    agent_id    text PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    username    text NOT NULL UNIQUE,
    realm       text NOT NULL,
    ha1         text NOT NULL CHECK (ha1 ~ '^[0-9a-f]{32}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
