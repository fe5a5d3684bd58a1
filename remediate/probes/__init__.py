"""Read-only knowledge of a host: container facts, logs, compose, where a service listens, SMTP/LMTP dialogues, waits.

Steps and diagnose ask the host through these functions only; nothing here changes anything.
"""
