"""`python -m assocmem.cli ...` (as torchrun runs it)."""

import sys

from assocmem.cli import main

sys.exit(main())
