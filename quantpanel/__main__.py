import sys

from quantpanel.cli import main

sys.exit(main())
