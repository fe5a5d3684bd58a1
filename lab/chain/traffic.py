"""Mail for the lab's gateway, one message every INTERVAL seconds, as real senders would send it: SMTP to
127.0.0.10:25 from 127.0.0.18. Errors are printed and the loop goes on (the gateway restarts during a fix)."""

import smtplib
import sys
import time
import uuid

INTERVAL = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0

while True:
    tag = uuid.uuid4().hex[:12]
    message = f"From: test@kuma8088.com\r\nTo: test@kuma8088.com\r\nSubject: traffic {tag}\r\n\r\nlab traffic {tag}\r\n"
    try:
        with smtplib.SMTP("127.0.0.10", 25, source_address=("127.0.0.18", 0), timeout=5) as smtp:
            smtp.sendmail("test@kuma8088.com", ["test@kuma8088.com"], message)
        print(f"sent {tag}", flush=True)
    except (OSError, smtplib.SMTPException) as e:
        print(f"not sent {tag}: {e}", flush=True)
    time.sleep(INTERVAL)
