-- An agent sends the caller on to the satisfaction survey (callcenter/ivr/survey.py)
-- through the same request path as every agent action: the ACD applies it.
ALTER TABLE agent_requests DROP CONSTRAINT IF EXISTS agent_requests_action_check;
ALTER TABLE agent_requests ADD CONSTRAINT agent_requests_action_check
    CHECK (action IN ('login', 'logout', 'pause', 'unpause', 'ready', 'join', 'leave',
                      'survey'));
