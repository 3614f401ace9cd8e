"""``python -m selfadapt`` (and ``torchrun ... -m selfadapt train ...``) runs the command line."""
import sys

from selfadapt.cli import main

sys.exit(main())
