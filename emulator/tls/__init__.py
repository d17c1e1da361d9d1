"""
TLS personas: the C{tls:} profile section (L{emulator.tls.config}, free of
pyOpenSSL so that loading a profile stays cheap), server contexts and
handshake facts (L{emulator.tls.context}), and the test CA with its
certificates (L{emulator.tls.certs}).
"""
