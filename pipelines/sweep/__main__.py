"""`python -m pipelines.sweep`: the sweep driver's command line (pipelines/sweep/driver.py)."""

import sys

from pipelines.sweep.driver import main

sys.exit(main())
