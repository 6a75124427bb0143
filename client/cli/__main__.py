"""``python -m medcompute.client.cli``: the ``medcompute`` command."""

import sys

from medcompute.client.cli import main

sys.exit(main())
