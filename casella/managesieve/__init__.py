"""ManageSieve (RFC 5804): customers' mail clients (Roundcube's managesieve plugin,
Thunderbird's sieve add-on, sieve-connect) upload, check and activate their Sieve scripts."""
