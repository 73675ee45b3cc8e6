"""Growing the list: signups with double opt-in, consent records, and forgetting on request.

- store.py: the signups, consent records and forgotten addresses, in the subscriber state.
- merge.py: the list every command sees (the list's rows + confirmed signups - opt-outs).
- form.py: what a form needs (the topic picker, the consent line, the CAPTCHA check, the
  embeddable snippet `digest form` prints).
- flow.py: a signup request, its confirmation and the welcome; the purge of stale signups.
- worker.py: the background thread that runs a request's address-dependent work.
- notices.py: the confirmation and welcome emails, rendered by the digest's own composer.
- consent.py: `digest subscribers show`, `digest subscribers forget`, the consent columns of export.

The public pages are in digest/web/signup.py.
"""
