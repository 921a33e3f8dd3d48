"""``python -m bert_trainer`` entry point (see cli.py)."""

import sys

from bert_trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
