-- QA beyond the spec's rules (callcenter/qa/conduct.py): the compliant phrasing
-- shown with a violation, and the caller leg's acoustics the situation scripts
-- (quiet line, noisy line) are judged on, kept so a re-score can use them.
ALTER TABLE qa_rule_results ADD COLUMN coaching text NOT NULL DEFAULT '';
ALTER TABLE recordings ADD COLUMN speech_dbfs double precision;  -- RMS over voiced audio
ALTER TABLE recordings ADD COLUMN snr_db double precision;       -- speech above line noise
