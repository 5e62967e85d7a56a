-- The call distributor (callcenter/acd/) owns agent states and call routing.
-- Agent states are the ACD's: 'busy' becomes 'on_call'; a pause has a reason;
-- every change is a history row (from, to, reason, time), so occupancy and time
-- in state can be computed per agent and interval. The UNIQUE key makes a
-- retried write of the same change harmless.
ALTER TABLE agents DROP CONSTRAINT IF EXISTS agents_state_check;
UPDATE agents SET state = 'on_call' WHERE state = 'busy';
ALTER TABLE agents ADD CONSTRAINT agents_state_check
    CHECK (state IN ('logged_out', 'available', 'ringing', 'on_call', 'wrap_up', 'paused'));
ALTER TABLE agents ADD COLUMN pause_reason text;

CREATE TABLE agent_state_history (
    id         bigserial PRIMARY KEY,
    agent_id   text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    reason     text,
    call_id    text,
    at         timestamptz NOT NULL,
    UNIQUE (agent_id, at, to_state)
);
CREATE INDEX agent_state_history_at_idx ON agent_state_history (at);

-- What people (CLI, web) ask of an agent's state. The ACD applies each request
-- once, in order (NOTIFY cc_agent_requests; pending ones at start), and marks it.
CREATE TABLE agent_requests (
    id           bigserial PRIMARY KEY,
    agent_id     text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    action       text NOT NULL CHECK (action IN ('login', 'logout', 'pause', 'unpause', 'ready')),
    reason       text,
    requested_by text NOT NULL DEFAULT 'system',
    requested_at timestamptz NOT NULL DEFAULT now(),
    applied_at   timestamptz
);
CREATE INDEX agent_requests_pending_idx ON agent_requests (id) WHERE applied_at IS NULL;

-- How a call that reached the queue ended: answered by an agent, abandoned by the
-- caller, turned into a call-back ticket, failed (no bridge), or left in the IVR.
ALTER TABLE calls ADD COLUMN outcome text
    CHECK (outcome IN ('answered', 'abandoned', 'callback', 'failed', 'ivr'));
