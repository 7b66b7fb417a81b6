"""``python -m sdekit``: the ``sdekit`` command."""
import sys

from sdekit.cli import main

sys.exit(main())
