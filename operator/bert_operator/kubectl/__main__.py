"""`python -m bert_operator.kubectl`: the plugin without its console script (what the tests run)."""

import sys

from . import main

sys.exit(main())
