"""
Profiles: one YAML file per product and version, read strictly into typed
objects (L{emulator.profiles.loader}).  The shipped files live in the
checkout's top-level C{profiles/} folder, installed as the package data
C{emulator.profiles.shipped}.
"""
