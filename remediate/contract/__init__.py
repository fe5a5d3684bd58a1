"""What a step kind or a check type sees: plans and their changes, the values operators pass. Imports nothing above."""
