"""`python -m rllib_paper ...`: the CLI with the current directory first on sys.path.

Ray jobs use this entrypoint so the uploaded working directory, not an installed copy, runs.
"""

import sys

from rllib_paper.cli import main

sys.exit(main())
