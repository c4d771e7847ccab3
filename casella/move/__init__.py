"""Moving mail in and out of casella (issue 19): `casella export`, `casella import` and
`casella import --from-dovecot`.

Lives here: format (the export directory's layout and JSON records, docs/export-format.md),
progress (a bar on a terminal, plain lines otherwise), exporter, importer (an export into any
backend), dovecot (pure parsers of a Dovecot Maildir's files) and dovecot_import (a Dovecot
Maildir tree into any backend). Everything goes through the store contract. Must never:
touch SQL or a backend's files, or be imported by a protocol module.
"""
