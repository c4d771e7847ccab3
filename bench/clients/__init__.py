"""Raw asyncio load clients for IMAP, POP3 and SMTP (no casella imports: they drive any server)."""
