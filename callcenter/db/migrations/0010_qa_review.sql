-- QA review (callcenter/qa/review.py, qa/store.py): versioned rule sets, the
-- results of earlier versions, people's verdicts per rule and agents' appeals.
-- The machine writes qa_results / qa_rule_results; people write qa_reviews and
-- qa_appeals; neither ever writes the other's rows.

-- Every rule file a result was computed with, as written.
CREATE TABLE qa_rule_sets (
    version    text PRIMARY KEY,               -- label + digest (qa/engine.py rules_version)
    content    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The current automatic result of a call (one row per call, as before) now says
-- which rule set made it and how many rules wait for a person; final_score is
-- the score with people's verdicts in place of the machine's.
ALTER TABLE qa_results ADD COLUMN rules_version text NOT NULL DEFAULT 'unversioned';
ALTER TABLE qa_results ADD COLUMN needs_review integer NOT NULL DEFAULT 0;
ALTER TABLE qa_results ADD COLUMN final_score double precision;
ALTER TABLE qa_results ADD COLUMN reviewed_rules integer NOT NULL DEFAULT 0;
UPDATE qa_results SET final_score = score;
ALTER TABLE qa_results ALTER COLUMN final_score SET NOT NULL;
ALTER TABLE qa_results ADD CONSTRAINT qa_results_final_score_check
    CHECK (final_score BETWEEN 0 AND 100);
CREATE INDEX qa_results_created_idx ON qa_results (created_at);
ALTER TABLE qa_rule_results ADD COLUMN needs_review boolean NOT NULL DEFAULT false;
CREATE INDEX qa_rule_review_idx ON qa_rule_results (rule_id) WHERE needs_review;

-- A result replaced by one of another rule set is kept here, whole.
CREATE TABLE qa_result_versions (
    call_id       text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    rules_version text NOT NULL,
    score         double precision NOT NULL,
    source        text NOT NULL,
    needs_review  integer NOT NULL DEFAULT 0,
    rules         jsonb NOT NULL,              -- [{id, passed, weight, detail, evidence, needs_review}]
    scored_at     timestamptz NOT NULL,
    replaced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, rules_version)
);

-- People's verdicts, append-only: the latest row per (call, rule) is in force.
-- `automatic` is what the machine said when the person ruled (with its rule set),
-- so agreement can be counted per rule and per rule-set version.
CREATE TABLE qa_reviews (
    id                bigserial PRIMARY KEY,
    call_id           text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    rule_id           text NOT NULL,
    passed            boolean,                 -- the person's verdict; NULL: does not apply
    automatic         boolean,
    automatic_review  boolean NOT NULL DEFAULT false,  -- the machine asked for a person
    rules_version     text NOT NULL,
    comment           text NOT NULL DEFAULT '',
    reviewer          text NOT NULL,           -- user name
    role              text NOT NULL,
    appeal_id         bigint,                  -- set when the verdict decided an appeal
    at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qa_reviews_call_idx ON qa_reviews (call_id, rule_id, id DESC);
CREATE INDEX qa_reviews_at_idx ON qa_reviews (at);

-- An agent disputes one rule result of their own call; a QA reviewer rules.
CREATE TABLE qa_appeals (
    id               bigserial PRIMARY KEY,
    call_id          text NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    rule_id          text NOT NULL,
    agent_id         text NOT NULL,
    appellant        text NOT NULL,            -- user name
    reason           text NOT NULL,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'upheld', 'rejected')),
    decided_by       text,
    decision_comment text,
    decided_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX qa_appeals_open_idx ON qa_appeals (call_id, rule_id) WHERE status = 'open';
CREATE INDEX qa_appeals_status_idx ON qa_appeals (status, created_at);
