"""The peers casella is measured against: Dovecot (IMAP, POP3) and Postfix (SMTP into Maildir),
installed from Debian's packages and run as private instances with the configs beside this file.
"""
