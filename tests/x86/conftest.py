"""Shared helpers of the x86 tests: planted 32-bit page tables and Volatility's Intel layers."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
