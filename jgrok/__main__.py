"""`python -m jgrok COMMAND ...`: the `jgrok` command (`jgrok.console`)."""

import sys

from jgrok.console import main

sys.exit(main())
