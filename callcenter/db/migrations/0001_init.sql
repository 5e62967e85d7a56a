-- Initial schema: calls, legs, recordings, transcript segments with word
-- times, tickets, QA results, agents and queues. Values of category, urgency,
-- complaint_severity and rule ids are the contract of hotline-standards.md.

CREATE TABLE queues (
    name        text PRIMARY KEY,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO queues (name, description) VALUES
    ('repair', 'Repairs (IVR key 1)'),
    ('complaint', 'Complaints (IVR key 2)'),
    ('consultation', 'Consultations (IVR key 3)'),
    ('general', 'Any agent (IVR key 0, fallbacks)');

CREATE TABLE agents (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    endpoint        text NOT NULL,            -- e.g. PJSIP/1001, or Local/1001@sim-agents in tests
    skills          text[] NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'logged_out'
        CHECK (state IN ('logged_out', 'available', 'ringing', 'busy', 'wrap_up', 'paused')),
    state_since     timestamptz NOT NULL DEFAULT now(),
    priority        integer NOT NULL DEFAULT 0,
    no_answer_count integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE calls (
    id             text PRIMARY KEY,
    source         text NOT NULL DEFAULT 'asterisk' CHECK (source IN ('asterisk', 'analyze', 'demo')),
    caller_number  text NOT NULL DEFAULT '',
    channel_id     text,
    stage          text NOT NULL DEFAULT 'greeting'
        CHECK (stage IN ('greeting', 'menu', 'queue', 'ringing', 'conversation', 'completed', 'failed')),
    status         text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'ended', 'processing', 'processed', 'failed')),
    ivr_digits     text NOT NULL DEFAULT '',
    ivr_intent     text,
    queue          text REFERENCES queues(name),
    priority       integer NOT NULL DEFAULT 0,
    agent_id       text REFERENCES agents(id),
    started_at     timestamptz NOT NULL DEFAULT now(),
    queued_at      timestamptz,
    answered_at    timestamptz,
    ended_at       timestamptz,
    hangup_by      text CHECK (hangup_by IN ('caller', 'agent')),
    duration_s     double precision,
    error          text
);
CREATE INDEX calls_started_idx ON calls (started_at DESC);
CREATE INDEX calls_active_idx ON calls (status) WHERE status = 'active';
CREATE INDEX calls_caller_idx ON calls (caller_number);

-- Every state change of a call, in order: the audit trail a restart resumes from.
CREATE TABLE call_events (
    id      bigserial PRIMARY KEY,
    call_id text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    at      timestamptz NOT NULL DEFAULT now(),
    kind    text NOT NULL,
    data    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX call_events_call_idx ON call_events (call_id, id);

CREATE TABLE legs (
    call_id    text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    leg        text NOT NULL CHECK (leg IN ('caller', 'agent')),
    channel_id text,
    agent_id   text REFERENCES agents(id),
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, leg)
);

CREATE TABLE recordings (
    id          bigserial PRIMARY KEY,
    call_id     text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    leg         text NOT NULL CHECK (leg IN ('caller', 'agent')),
    path        text NOT NULL,               -- relative to the recordings folder
    format      text NOT NULL DEFAULT 'wav',
    sample_rate integer,
    duration_s  double precision,
    size_bytes  bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (call_id, leg)
);

CREATE TABLE transcript_segments (
    id      bigserial PRIMARY KEY,
    call_id text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    leg     text NOT NULL CHECK (leg IN ('caller', 'agent')),
    start_s double precision NOT NULL,
    end_s   double precision NOT NULL,
    text    text NOT NULL,
    words   jsonb NOT NULL DEFAULT '[]'        -- [{"w","start","end","conf"}]
);
CREATE INDEX transcript_segments_call_idx ON transcript_segments (call_id, start_s);

CREATE SEQUENCE ticket_number_seq;

CREATE TABLE tickets (
    id                 bigserial PRIMARY KEY,
    number             text NOT NULL UNIQUE,
    call_id            text UNIQUE REFERENCES calls(id) ON DELETE SET NULL,
    category           text NOT NULL
        CHECK (category IN ('engineering', 'cleaning', 'security', 'landscaping', 'complaint', 'consultation')),
    urgency            text NOT NULL CHECK (urgency IN ('P1', 'P2', 'P3', 'P4')),
    complaint_severity text CHECK (complaint_severity IN ('minor', 'important', 'major')),
    repeat_complaint   boolean NOT NULL DEFAULT false,
    vip                text NOT NULL DEFAULT 'none' CHECK (vip IN ('none', 'elderly', 'disabled')),
    caller_name        text NOT NULL DEFAULT '',
    phone              text NOT NULL DEFAULT '',
    building           text NOT NULL DEFAULT '',
    unit               text NOT NULL DEFAULT '',
    room               text NOT NULL DEFAULT '',
    description        text NOT NULL DEFAULT '',
    channel            text NOT NULL DEFAULT 'phone',
    status             text NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'incomplete', 'dispatched', 'resolved', 'closed')),
    deadline           timestamptz,
    escalate_to        text,
    incomplete         text[] NOT NULL DEFAULT '{}',
    callback_required  boolean NOT NULL DEFAULT false,
    history            bigint[] NOT NULL DEFAULT '{}', -- earlier tickets of the same caller
    details            jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_phone_idx ON tickets (phone, created_at DESC);

CREATE TABLE qa_results (
    call_id    text PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE,
    score      double precision NOT NULL CHECK (score BETWEEN 0 AND 100),
    source     text NOT NULL DEFAULT 'asr',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE qa_rule_results (
    call_id  text NOT NULL REFERENCES qa_results(call_id) ON DELETE CASCADE,
    rule_id  text NOT NULL,
    passed   boolean,                             -- NULL: the rule does not apply
    weight   double precision NOT NULL DEFAULT 0,
    detail   text NOT NULL DEFAULT '',
    evidence jsonb NOT NULL DEFAULT '[]',         -- [{"leg","start","end","text"}]
    PRIMARY KEY (call_id, rule_id)
);
CREATE INDEX qa_rule_failures_idx ON qa_rule_results (rule_id) WHERE passed = false;
