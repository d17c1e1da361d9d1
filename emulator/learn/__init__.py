"""
Learned personas: a real SMTP server recorded or probed, its sessions turned
into a server profile, and the replay checked byte for byte.

Sans-IO (bytes and transcripts in, data out; no sockets, clocks or files):
 - L{emulator.learn.dialogue}: a transcript as the server's exchanges
   (command line, reply bytes, inside TLS or not), from either leg;
 - L{emulator.learn.fields}: which bytes of a reply are template fields
   (host name, client address, date, queue id, the client's own words);
 - L{emulator.learn.infer}: exchanges to profile data (which catalogue reply
   each one is, the EHLO list, limits, TLS and AUTH facts), what conflicts;
 - L{emulator.learn.emit}: that data as a profile file, every text marked;
 - L{emulator.learn.script}: the probe's fixed sessions and the client that
   plays them;
 - L{emulator.learn.masking}: the recorder's middlebox type and the masking
   of credentials in its transcripts;
 - L{emulator.learn.diff}: two sessions' server bytes compared.

I/O: L{emulator.learn.record} (the Twisted recorder in front of a real
server), L{emulator.learn.probe} (the probe over sockets, or in memory
against a L{emulator.testing.harness.Harness}) and L{emulator.learn.files}
(transcripts read, profiles written).  The C{emulator record}, C{learn} and
C{diff} commands are in L{emulator.cli}; docs/own-server.md is the walk.
"""
