"""Windows kernel structure layouts: generated construct definitions and the runtime that uses them.

- `cons`: the construct vocabulary of the generated `structs/` modules (`Record`, `At`, `Bits`, ...).
- `isf`, `generate`: Volatility ISF symbol tables -> readable construct modules in `structs/`
  (`python -m pykd_ext.layouts.generate`).
- `model`: `KernelLayouts`/`TypeLayout`/`FieldLayout`, offset tables and ~1 us field readers
  compiled from the construct objects.
- `registry`: which builds exist (shipped `structs/index.json` + the per-user store), loading one,
  `--symbols` and `structs import`.
- `select`: choosing the layouts for a target (PDB GUID, nearest revision, fingerprint).

Nothing is imported here, so `import pykd_ext.layouts.x` stays cheap for `!py` commands.
"""
