"""
What the emulator keeps of a session: transcripts (JSON lines and the arrow
form, L{emulator.capture.transcript}) and accepted messages (a Maildir with
an envelope log, L{emulator.capture.maildir}), written atomically
(L{emulator.capture.files}).  Plain files and memory, no Twisted.
"""
