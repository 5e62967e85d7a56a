-- An agent serves the queues their skills allow, less the ones they left
-- (join / leave requests, applied by the ACD like every agent request).
ALTER TABLE agents ADD COLUMN queues_off text[] NOT NULL DEFAULT '{}';
ALTER TABLE agent_requests DROP CONSTRAINT IF EXISTS agent_requests_action_check;
ALTER TABLE agent_requests ADD CONSTRAINT agent_requests_action_check
    CHECK (action IN ('login', 'logout', 'pause', 'unpause', 'ready', 'join', 'leave'));
