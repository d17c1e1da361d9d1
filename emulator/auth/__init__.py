"""
Authentication personas: AUTH (RFC 4954) with LOGIN, PLAIN and NTLM (GSSAPI
listed and refused), Exchange 5.0's XAUTH and Exchange 2000/2003's X-EXPS,
against accounts that are profile data.

Owns the C{auth:} profile section, the AUTH, XAUTH and X-EXPS verb handlers, the
accounts and the NTLM server side (pyspnego).  Imports the core only.
"""
