"""``python -m dos_agent``: the same as the ``dos-agent`` command."""

import sys

from dos_agent.cli import main

sys.exit(main())
