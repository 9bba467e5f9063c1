"""`python -m bot`: run the program, or one of its admin commands (see bot.cli)."""

from bot.cli import main

raise SystemExit(main())
