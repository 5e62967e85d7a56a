-- Transcription figures (GET /api/transcription/stats, /metrics) read the calls
-- processed in a recent window: their "processed" events carry the decode's
-- audio, wall and CPU seconds.
CREATE INDEX IF NOT EXISTS call_events_processed_idx ON call_events (at)
    WHERE kind = 'processed';
