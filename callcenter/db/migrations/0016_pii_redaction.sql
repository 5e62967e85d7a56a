-- Personal numbers (mobile, identity card, bank card) are masked in what is stored
-- and shown by default (callcenter/pii.py): a segment's text and words are the
-- masked ones; what was recognised, where it differs, is kept beside them for the
-- roles allowed to see originals and for QA rescoring. Segments stored before this
-- migration were never masked (redacted = false): readers mask them as they read.
ALTER TABLE transcript_segments
    ADD COLUMN IF NOT EXISTS original_text text,
    ADD COLUMN IF NOT EXISTS original_words jsonb,
    ADD COLUMN IF NOT EXISTS redacted boolean NOT NULL DEFAULT false;

-- Each leg's check: how many personal numbers its transcript held (NULL: not yet
-- checked, so only the roles allowed to hear originals may hear it) and the copy
-- with them muted, beside the original (NULL when none were found).
ALTER TABLE recordings
    ADD COLUMN IF NOT EXISTS pii_findings integer,
    ADD COLUMN IF NOT EXISTS muted_path text;
