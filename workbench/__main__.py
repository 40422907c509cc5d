"""`python -m workbench` runs the CLI."""

import sys

from workbench.cli.main import main

sys.exit(main())
