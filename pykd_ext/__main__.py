"""`python -m pykd_ext COMMAND ...` (also `!py -m pykd_ext COMMAND ...` inside WinDbg)."""
import sys

if "pykd" in sys.modules or hasattr(sys.stdout, "writedml"):   # H11: WinDbg's `!py -m pykd_ext`
    from pykd_ext.windbg.entry import main as windbg_main
    windbg_main()
else:
    from pykd_ext.cli import main
    sys.exit(main())
