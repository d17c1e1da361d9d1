"""
The sender side: legacy *clients* (MTAs and mail clients) as personas, for
testing modern servers.  L{emulator.sender.client} is the sans-IO client,
L{emulator.sender.profile} its profiles (C{role: client}),
L{emulator.sender.host} runs it over sockets or in memory, and
L{emulator.sender.matrix} runs a real client against every server persona.
"""
