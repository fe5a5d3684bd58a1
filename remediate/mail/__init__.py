"""The domain: compose files and their env files as compose reads them, next hops, SMTP. Text in, text out."""
