"""Coverage-guided fuzzing of the three decoders that hostile input meets first (issue 10).

:mod:`tests.fuzz.targets` holds one check per decoder (PIN-pad link, socket-door envelope,
request validation) that lets through only the errors that decoder documents; anything else
escaping a check is a finding.  :mod:`tests.fuzz.driver` runs a check under atheris (libFuzzer),
:mod:`tests.fuzz.seeds` builds each target's seed corpus from real messages.  See docs/fuzzing.md.
"""
