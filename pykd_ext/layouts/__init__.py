"""Windows kernel structure layouts: generated construct definitions and the runtime that uses them.

- `cons`: the construct vocabulary of the generated `structs/` modules (`Record`, `At`, `Bits`, ...).
- `isf`, `generate`: Volatility ISF symbol tables -> readable construct modules in `structs/`
  (`python -m pykd_ext.layouts.generate`).
- `model`: `KernelLayouts`/`TypeLayout`/`FieldLayout`, offset tables and ~1 us field readers
  compiled from the construct objects.
- `registry`: which builds exist (shipped `structs/index.json` + the per-user store), loading one,
  `--symbols` and `structs import`; `entry`: a build's identity (`BuildEntry`).
- Symbol files from users are data, never code: `bounded_read` (regular files, size and
  decompression limits), `isf_check` (the whole file checked), `from_reduced` (construct objects
  built directly from a reduced build, checked again), `reduced_json` and `user_store` (the
  per-user store and the typeInfo cache keep reduced builds as JSON).
- `select`: choosing the layouts for a target (PDB GUID, nearest revision, fingerprint).

Nothing is imported here, so `import pykd_ext.layouts.x` stays cheap for `!py` commands.
"""
