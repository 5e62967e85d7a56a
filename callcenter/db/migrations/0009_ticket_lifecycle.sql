-- The ticket lifecycle (callcenter/tickets/lifecycle.py) in the database: every
-- field of its TicketState is a column, every transition a ticket_history row,
-- every warning and escalation a ticket_alerts row.

-- Statuses of the lifecycle (hotline-standards.md section 5). 'open' and
-- 'incomplete' were the analysis's words for a ticket nobody had handled yet:
-- both are 'new' now, and "incomplete" stays what it always also was, the
-- `incomplete` column (the fields missing for a call-back).
ALTER TABLE tickets DROP CONSTRAINT IF EXISTS tickets_status_check;
UPDATE tickets SET status = 'new' WHERE status IN ('open', 'incomplete');
ALTER TABLE tickets ALTER COLUMN status SET DEFAULT 'new';
ALTER TABLE tickets ADD CONSTRAINT tickets_status_check
    CHECK (status IN ('new', 'dispatched', 'in_progress', 'resolved', 'callback', 'closed'));

-- Several tickets per call (a caller may report two problems), and tickets with
-- no call at all (walk-in, online). `auto` marks the one ticket the analysis of
-- a call opened (or the wrap-up opened for it): re-processing the call updates
-- that row and no other.
ALTER TABLE tickets DROP CONSTRAINT IF EXISTS tickets_call_id_key;
ALTER TABLE tickets ADD COLUMN auto boolean NOT NULL DEFAULT false;
UPDATE tickets SET auto = true WHERE call_id IS NOT NULL;
CREATE UNIQUE INDEX tickets_auto_call_idx ON tickets (call_id) WHERE auto;
CREATE INDEX tickets_call_idx ON tickets (call_id) WHERE call_id IS NOT NULL;
UPDATE tickets SET channel = 'phone' WHERE channel NOT IN ('phone', 'walk_in', 'online');
ALTER TABLE tickets ADD CONSTRAINT tickets_channel_check
    CHECK (channel IN ('phone', 'walk_in', 'online'));

-- The lifecycle's own fields. Owner, assignee and the `by` of history rows are
-- web user names (or 'system'); departments are the ids of departments.yaml.
ALTER TABLE tickets
    ADD COLUMN owner            text,
    ADD COLUMN department       text,
    ADD COLUMN assignee         text,
    ADD COLUMN dispatched_at    timestamptz,
    ADD COLUMN started_at       timestamptz,
    ADD COLUMN contacted_at     timestamptz,
    ADD COLUMN resolved_at      timestamptz,
    ADD COLUMN resolution_notes text NOT NULL DEFAULT '',
    ADD COLUMN photos           text[] NOT NULL DEFAULT '{}',   -- ticket_attachments ids
    ADD COLUMN callback_at      timestamptz,
    ADD COLUMN satisfaction     smallint CHECK (satisfaction BETWEEN 1 AND 5),
    ADD COLUMN callback_note    text NOT NULL DEFAULT '',
    ADD COLUMN closed_at        timestamptz,
    ADD COLUMN reopened_at      timestamptz,
    ADD COLUMN reopen_count     integer NOT NULL DEFAULT 0 CHECK (reopen_count >= 0),
    ADD COLUMN escalation_level integer NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
    ADD COLUMN sent             text[] NOT NULL DEFAULT '{}',   -- alarms already fired (keys)
    ADD COLUMN next_tick        timestamptz,                    -- when the SLA clock needs a Tick
    -- The classifier's reasons: needs_confirmation, evidence, complaint details.
    ADD COLUMN judgement        jsonb NOT NULL DEFAULT '{}';
-- The SLA ticker reads the earliest wake-up and the due tickets from this index.
CREATE INDEX tickets_next_tick_idx ON tickets (next_tick) WHERE next_tick IS NOT NULL;
CREATE INDEX tickets_owner_idx ON tickets (owner, id DESC) WHERE owner IS NOT NULL;
-- Tickets nobody handled yet get one Tick at once: the clock computes their
-- deadline and fires what is due. Tickets already past 'new' were handled
-- without the lifecycle (their dispatch and fix times were never recorded):
-- their clocks start with their next event rather than from invented times.
UPDATE tickets SET next_tick = now() WHERE status = 'new';

-- One row per transition and per alarm fired: who, with which role, when, what.
CREATE TABLE ticket_history (
    id          bigserial PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    by          text NOT NULL,
    role        text NOT NULL,            -- agent, qa, supervisor, admin or system
    what        text NOT NULL,            -- opened, dispatched, ..., warned, escalated, notice_sent
    from_status text,
    to_status   text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_history_ticket_idx ON ticket_history (ticket_id, id);

-- Photos and documents of a ticket. The file lives under the attachments folder
-- as `stored_name` (made by the service, never from the client's file name).
CREATE TABLE ticket_attachments (
    id           text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    ticket_id    bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    filename     text NOT NULL,
    content_type text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    stored_name  text NOT NULL UNIQUE,
    uploaded_by  text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_attachments_ticket_idx ON ticket_attachments (ticket_id, at);

-- The lifecycle's Warn and Escalate commands: to whom (a user name, a level of
-- the chain such as supervisor or deputy_gm, management, service_centre), why,
-- about which clock; open until someone acknowledges it.
CREATE TABLE ticket_alerts (
    id              bigserial PRIMARY KEY,
    ticket_id       bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    at              timestamptz NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('warn', 'escalate')),
    recipient       text NOT NULL,
    level           integer NOT NULL DEFAULT 0,
    reason          text NOT NULL,
    clock           text,
    due             timestamptz,
    detail          text NOT NULL DEFAULT '',
    acknowledged_by text,
    acknowledged_at timestamptz
);
CREATE INDEX ticket_alerts_open_idx ON ticket_alerts (recipient, id) WHERE acknowledged_at IS NULL;
CREATE INDEX ticket_alerts_ticket_idx ON ticket_alerts (ticket_id, id);
