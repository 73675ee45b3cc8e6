"""Web apps: the local preview (`digest preview`); later the public endpoints (unsubscribe, webhooks)."""
