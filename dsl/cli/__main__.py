"""``python -m dsl.cli ARGS`` == ``plr ARGS`` (the test suite runs the CLI this way)."""

from . import main

if __name__ == "__main__":
    main()
