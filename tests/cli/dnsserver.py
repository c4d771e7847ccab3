"""A small authoritative DNS server for tests: answers UDP queries on 127.0.0.1 from a zone in
zone-file text, with dnspython's message handling (NXDOMAIN for a name it does not have, an
empty answer for a type the name lacks; REFUSED for everything when asked to)."""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.zone


class ZoneServer:
    def __init__(self, zone_text: str, origin: str, refuse: bool = False) -> None:
        self.refuse = refuse          # answer REFUSED to everything (a resolver that says no)
        self.zone = dns.zone.from_text(zone_text, origin=origin, relativize=False,
                                       check_origin=False)
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.refuse:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        question = query.question[0]
        node = self.zone.get_node(question.name)
        if node is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            rdataset = node.get_rdataset(question.rdclass, question.rdtype)
            if rdataset is not None:
                rrset = response.find_rrset(response.answer, question.name, question.rdclass,
                                            question.rdtype, create=True)
                rrset.update(rdataset)
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            self._sock.sendto(self._answer(wire), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
