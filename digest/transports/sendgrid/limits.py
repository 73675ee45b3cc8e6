"""SendGrid's rules about scheduled sends that digest keeps to (no client imported: the scheduler
and the crash recovery read them on any transport)."""

from __future__ import annotations

#: SendGrid refuses to cancel a scheduled send later than 10 minutes before send_at ("You can't
#: pause or cancel a batch later than 10 minutes before the scheduled send_at time", Cancel
#: Scheduled Sends); within them it may accept a cancel and deliver anyway. A minute's margin.
CANCEL_CUTOFF_SECONDS = 600 + 60
#: SendGrid holds a mail at most 72 hours ahead ("A send cannot be scheduled more than 72 hours
#: in advance", Mail Send v3 `send_at`).
MAX_SEND_AT_AHEAD_SECONDS = 72 * 3600
