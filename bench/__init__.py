"""casella's benchmark harness (issue 8): asyncio load clients for SMTP, IMAP and POP3, the
scenarios, the runner that starts casella and private Dovecot/Postfix instances side by side,
and the one table. Run it with `make bench` or `python -m bench --help`.

Nothing here is imported by casella; the harness imports casella only to seed its store and
to start it (bench/seed.py, bench/casella_target.py).
"""
