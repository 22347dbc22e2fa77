"""Email: the outbox every message goes through, its delivery over SMTP, and the Outbox
page where mail can be read when no SMTP server is configured (docs/email.md).

    outbox.py    write a message (text and HTML, from templates/email/) in the caller's
                 transaction, under a key that makes it once-only
    delivery.py  the job's side: send due messages over SMTP, retry with back-off
    routes.py    /outbox: the signed-in person's mail, as it was or would have been sent
"""
