"""What every protocol shares when mail arrives: recipient expansion, local delivery, Sieve,
vacation, forwarding (SRS) and quota warnings. Below smtp/ and imap/: it imports mail/, auth/,
limits/ and store/, never a protocol package.
"""
