-- The IVR as a tree of menus (callcenter/ivr/menu.yaml): where in it a call
-- ended, why the IVR itself ended one (the spec's silent-line script, a message
-- left outside opening hours), the problem description recorded after the tone,
-- the satisfaction survey, and one row per thing that happened at a node for
-- the per-node statistics.
ALTER TABLE calls ADD COLUMN ivr_node text;            -- the last menu or script node
ALTER TABLE calls ADD COLUMN end_reason text
    CHECK (end_reason IN ('silent_line', 'closed'));
ALTER TABLE calls ADD COLUMN ivr_description text;     -- relative to the recordings folder
ALTER TABLE calls ADD COLUMN ivr_description_text text;  -- its transcript
ALTER TABLE calls ADD COLUMN survey_score smallint CHECK (survey_score BETWEEN 1 AND 5);
ALTER TABLE calls ADD COLUMN survey_at timestamptz;
ALTER TABLE tickets ADD COLUMN satisfaction_ivr smallint
    CHECK (satisfaction_ivr BETWEEN 1 AND 5);          -- the caller's own key press

CREATE TABLE ivr_events (
    id      bigserial PRIMARY KEY,
    call_id text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    node    text NOT NULL,
    kind    text NOT NULL
        CHECK (kind IN ('entry', 'choice', 'timeout', 'invalid', 'transfer', 'hangup')),
    via     text NOT NULL DEFAULT '' CHECK (via IN ('', 'key', 'speech')),
    choice  text NOT NULL DEFAULT '',
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ivr_events_at ON ivr_events (at);
CREATE INDEX ivr_events_call ON ivr_events (call_id);
