"""Names shared with the Asterisk configuration in docker/asterisk/.

Channel variables, dialplan contexts and the Stasis application name live here
once, so the dialplan and the Python side cannot drift apart silently.
"""

STASIS_APP = "hotline"

# Dialplan contexts (docker/asterisk/extensions.conf).
CONTEXT_HOTLINE = "hotline"
CONTEXT_SAFE_FALLBACK = "hotline-fallback"  # where any AGI error sends the caller
CONTEXT_TEST_CALLERS = "sim-callers"
CONTEXT_TEST_AGENTS = "sim-agents"
CONTEXT_SURVEY = "hotline-survey"  # the satisfaction survey after a call (AGI script survey)
CONTEXT_AGENT_PHONES = "agent-phones"  # what a SIP agent phone may dial (echo test only)

# Channel variables set by the IVR (AGI) and read by routing (ARI).
VAR_CALL_ID = "CC_CALL_ID"
VAR_QUEUE = "CC_QUEUE"
VAR_IVR_DIGITS = "CC_IVR_DIGITS"
VAR_IVR_INTENT = "CC_IVR_INTENT"
VAR_PRIORITY = "CC_PRIORITY"
VAR_VIP = "CC_VIP"
VAR_ONCALL_DIAL = "CC_ONCALL_DIAL"  # the on-call engineer's dial string (queues closed)
VAR_SURVEY_SCORE = "CC_SURVEY_SCORE"  # the satisfaction key the caller pressed (1-5)
VAR_IVR_RESULT = "CC_IVR_RESULT"  # ok | hangup | oncall | error
VAR_IVR_LISTENING = "CC_IVR_LISTENING"  # the node whose answer the IVR is waiting for
# Set by routing (ARI).
VAR_BRIDGED = "CC_BRIDGED"  # "1" on both channels once bridged and both legs record
VAR_CALLER_CHANNEL = "CC_CALLER_CHANNEL"  # on an agent channel: the caller's channel name
# Set by simulated callers/agents in the test context: which WAV to play.
VAR_SIM_CALLER_AUDIO = "SIM_CALLER_AUDIO"
VAR_SIM_CALLER_DIGITS = "SIM_CALLER_DIGITS"
VAR_SIM_CALLER_SPEECH = "SIM_CALLER_SPEECH"  # a spoken menu choice, said once the IVR listens
VAR_SIM_SURVEY_KEY = "SIM_SURVEY_KEY"  # the rating keyed when the survey asks
VAR_SIM_SPEAK_AT = "SIM_SPEAK_AT"  # the IVR node at which the simulated caller speaks
VAR_SIM_AGENT_AUDIO = "SIM_AGENT_AUDIO"
VAR_SIM_MENU_WAIT = "SIM_MENU_WAIT"  # seconds before the simulated caller keys the digit

# Queue names (skills). Digit -> queue mapping lives in callcenter/ivr/menu.yaml.
QUEUES = ("repair", "complaint", "consultation", "general")
