"""SendGrid's documented limits, each with where it is written down.

"OpenAPI" is SendGrid's own OpenAPI description of the v3 Mail Send API (the project keeps a copy
as reference/sendgrid-mail-v3.openapi.json in its shared notes; the tests never read it): the
names below are paths into its `PostMailSend` request body schema. The limits it does not state
are from SendGrid's documentation pages, named beside them.
"""

from __future__ import annotations

import re

#: Total size of one mail/send request: under 30 MB. SendGrid docs, Mail Send v3, its limitations
#: (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send; the shared notes'
#: email-rules.md table of documented limits).
MAX_BODY_BYTES = 30 * 1024 * 1024
#: OpenAPI: PostMailSend .personalizations.maxItems = 1000
MAX_PERSONALIZATIONS = 1000
#: Recipients (to + cc + bcc) of one request: at most 1000. SendGrid docs, Mail Send v3, its
#: limitations (as above); OpenAPI: personalizations[].cc.maxItems and .bcc.maxItems = 1000.
MAX_RECIPIENTS = 1000
#: OpenAPI: PostMailSend .categories.maxItems = 10
MAX_CATEGORIES = 10
#: OpenAPI: PostMailSend .categories.items.maxLength = 255 ("A category name cannot exceed 255
#: characters")
MAX_CATEGORY_LEN = 255
#: OpenAPI: .custom_args description ("Total `custom_args` size may not exceed 10,000 bytes") and
#: personalizations[].custom_args ("This field may not exceed 10,000 bytes")
MAX_CUSTOM_ARGS_BYTES = 10_000
#: OpenAPI: personalizations[].substitutions description ("may not exceed 10,000 bytes per
#: personalization object")
MAX_SUBSTITUTIONS_BYTES = 10_000
#: OpenAPI: .send_at and personalizations[].send_at descriptions ("A send cannot be scheduled more
#: than 72 hours in advance")
MAX_SEND_AT_AHEAD = 72 * 3600
#: OpenAPI: PostMailSend .asm.groups_to_display.maxItems = 25
MAX_GROUPS_TO_DISPLAY = 25
#: Scheduled sends can be cancelled or paused no later than 10 minutes before send_at. SendGrid
#: docs, "Cancel scheduled sends": "You can't pause or cancel a batch later than 10 minutes before
#: the scheduled send_at time." https://www.twilio.com/docs/sendgrid/api-reference/cancel-scheduled-sends
CANCEL_LEAD_SECONDS = 600

#: The 401 body's message, as SendGrid answers a bad key.
AUTH_ERROR = "The provided authorization grant is invalid, expired, or revoked"
#: OpenAPI: PostMailSend .headers description ("You may not override the following headers: ...")
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
#: The suppression lists `digest sync` reads (GET /v3/suppression/<name>, SendGrid's Suppressions API).
SUPPRESSION_LISTS = ("unsubscribes", "bounces", "spam_reports", "invalid_emails", "blocks")

_LABEL = r"[^\s@<>(),;:\"\[\]\\.]+"
#: A cheap address syntax, close to what SendGrid answers "Does not contain a valid address" for.
EMAIL_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*@{_LABEL}(?:\.{_LABEL})+$")
