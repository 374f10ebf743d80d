"""Mail in (issue 13): inbound e-mail parsed (`parse`), classified as a person's mail, an
automatic reply or a bounce (`classify`), its new text separated from quoted history and
signatures (`strip`), threaded into the conversation it answers and routed (`service`).

The inbound-parse webhooks (api/webhooks/{mailgun,sendgrid,postmark,email}.py) and the IMAP
mailbox reader all end in `service.route_email`."""
