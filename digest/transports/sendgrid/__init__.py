"""Everything digest knows about SendGrid, in one package:

- transport.py: v3 mail/send through the official client (the `Transport`), scheduled sends'
  batch ids and cancels, and how each answer decides exactly-once;
- suppressions.py: reading SendGrid's suppression lists (what `digest sync` mirrors);
- webhook.py: the Event Webhook's signature, and what each event means (an opt-out for the
  subscriber state, an event kept for reports).

Nothing is imported here: `digest serve` reads webhooks without loading the mail client, and an
outbox or SMTP run never loads this package at all.
"""
