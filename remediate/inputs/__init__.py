"""Files in, typed records out: inventories (YAML, INI), playbooks and their search path, templates; file:line errors."""
