"""POP3 (RFC 1939) with CAPA (RFC 2449), AUTH (RFC 5034) and STLS (RFC 2595): proto.py is the
pure core, maildrop.py the session's snapshot and deletion policies, session.py the state
machine, server.py the listeners."""
