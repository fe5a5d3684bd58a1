"""`remediate serve`: Alertmanager webhooks in, approved runs out, and the alert's own `resolved` as the proof.

rules: the rules file; store: incidents in SQLite; engine: what happens to an incident; app: the HTTP API and page;
client: the CLI's side of the API."""
