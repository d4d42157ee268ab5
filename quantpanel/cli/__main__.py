"""``python -m quantpanel.cli``: the ``quantpanel`` console script."""

import sys

from quantpanel.cli import main

sys.exit(main())
