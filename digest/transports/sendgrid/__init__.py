"""Everything digest knows about SendGrid, in one package:

- transport.py: v3 mail/send (the `Transport`): the request body, retries, how each answer
  decides exactly-once, scheduled batches and their cancels;
- client.py: the one place a client is made (the API key from the environment, a timeout, and
  pool.py's keep-alive connections behind the official client);
- limits.py: its scheduled-send rules (the cancel cut-off, how far ahead send_at may be);
- suppressions.py: reading its suppression lists (what `digest sync` mirrors into the state);
- webhook.py: the Event Webhook's signature, and what each event means (an opt-out for the
  subscriber state, an event kept for reports).

Nothing is imported here: `digest serve` checks webhooks and the scheduler reads limits.py
without loading the mail client, and an outbox or SMTP run loads none of the client.
"""
