"""The end of an answered on-call call: AGI script ``oncall-ended``.

An emergency while the repair queue is closed is dialled to the on-call
engineer by the dialplan, not by routing; its ``h`` extension runs this script
once the call is over. It records what routing records for its own calls: the
two legs (the dialplan's MixMonitor wrote them from the answer), the end, and
with it the analysis job, so the call gets its transcript, ticket and QA.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from callcenter.agi.channel import AgiChannel
from callcenter.constants import VAR_CALL_ID
from callcenter.db.writer import OrderedWriter
from callcenter.ivr.handler import CallSink, IvrHandler

log = structlog.get_logger(__name__)


def make_oncall_ended_handler(sink: CallSink, *, writer: OrderedWriter | None = None
                              ) -> IvrHandler:
    writes = writer if writer is not None else OrderedWriter(sink)

    async def handle_oncall_ended(channel: AgiChannel) -> None:
        call_id = await channel.get_variable(VAR_CALL_ID) or ""
        talked = _seconds(await channel.get_variable("ANSWEREDTIME"))
        if not call_id:
            log.error("oncall.no_call_id", channel=channel.channel_name)
            return
        ended = datetime.now(UTC)
        answered = ended - timedelta(seconds=talked)
        for leg in ("caller", "agent"):
            writes.submit(call_id, "add_leg", call_id, leg, channel_id=None,
                          recording_name=f"{call_id}/{leg}.wav", started_at=answered)
        writes.submit(call_id, "update_call", call_id, answered_at=answered,
                      stage="conversation")
        writes.submit(call_id, "finish_call", call_id, stage="conversation", hangup_by=None,
                      ended_at=ended, outcome="answered")
        log.info("oncall.ended", call_id=call_id, talked_s=talked)

    return handle_oncall_ended


def _seconds(text: str | None) -> float:
    try:
        return max(0.0, float(text or 0))
    except ValueError:
        return 0.0
