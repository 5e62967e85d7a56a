-- The residents directory: who calls from a number, where they live, and whether
-- they are a VIP (elderly living alone, disabled: spec section 5). The IVR raises
-- a VIP caller's priority; the agent console shows the entry on the screen pop.
-- Imported with `callcenter residents import FILE.csv`.
CREATE TABLE residents (
    phone      text PRIMARY KEY CHECK (phone ~ '^[0-9]{5,20}$'),
    name       text NOT NULL DEFAULT '',
    building   text NOT NULL DEFAULT '',
    unit       text NOT NULL DEFAULT '',
    room       text NOT NULL DEFAULT '',
    vip        text NOT NULL DEFAULT 'none' CHECK (vip IN ('none', 'elderly', 'disabled')),
    notes      text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- What the agent says about a call at wrap-up, beside what the machines found:
-- the disposition, and the ticket fields people entered. The analysis writes
-- the ticket's own columns (automatic values) and never touches `human`; what
-- the ticket shows is the human value where there is one.
ALTER TABLE calls ADD COLUMN disposition text;
ALTER TABLE calls ADD COLUMN disposition_by text;
ALTER TABLE calls ADD COLUMN disposition_at timestamptz;
ALTER TABLE tickets ADD COLUMN human jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tickets ADD COLUMN human_by text;
ALTER TABLE tickets ADD COLUMN human_at timestamptz;
CREATE INDEX calls_agent_started_idx ON calls (agent_id, started_at DESC);
