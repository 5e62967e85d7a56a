-- When the current agent was first offered the call: answer_speed measures
-- rings (offer -> answer), not time spent waiting in the queue.
ALTER TABLE calls ADD COLUMN ringing_at timestamptz;
