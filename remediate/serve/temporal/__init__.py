"""`remediate serve --backend temporal`: incidents as durable workflows on a Temporal cluster (workflow.py), plan,
apply and rollback as activities (activities.py), and the front end every replica runs (backend.py)."""
