"""
Authentication personas: AUTH (RFC 4954) with LOGIN, PLAIN and NTLM, and
Exchange 5.0's XAUTH, against accounts that are profile data.

Owns the C{auth:} profile section, the AUTH and XAUTH verb handlers, the
accounts and the NTLM server side (pyspnego).  Imports the core only.
"""
