"""`python -m pykd_ext COMMAND ...` (also `!py -m pykd_ext COMMAND ...` inside WinDbg)."""
import sys

from pykd_ext.cli import main

sys.exit(main())
