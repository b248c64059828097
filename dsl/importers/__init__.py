"""Other tools' policies → readable .plr (``plr import intercept|policylayer``).

- ``intercept``: PolicyLayer's open-source proxy (YAML ``rules[]``, ``conditions``, ``state``);
- ``policylayer``: PolicyLayer v1 JSON, through ``dsl.decompile`` (what ``plr decompile`` does).

Each returns the text and the warnings naming what was not carried over (also written as
comments in the text): nothing is dropped silently.
"""
