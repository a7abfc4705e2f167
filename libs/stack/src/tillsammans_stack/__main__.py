"""``python -m tillsammans_stack``: the same as the ``tillsammans`` command."""

import sys

from tillsammans_stack.cli import main

sys.exit(main())
