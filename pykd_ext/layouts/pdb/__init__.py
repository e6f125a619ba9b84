"""Microsoft PDB files as layouts: MSF container, type records, symbols, identity -> ISF.

Entry points: `pdb_to_isf(path)` (the ISF dictionary, for the validated ISF reduction),
`convert_pdb(path)` (the same with identity, names and notes), `read_pdb_identity(path)` (GUID
and age, e.g. to check a downloaded file), `is_pdb(head)` / `is_pdb_file(path)` (by content,
not by file name: users rename files).
"""
from pykd_ext.layouts.pdb.identity import read_pdb_identity
from pykd_ext.layouts.pdb.msf import MSF7_MAGIC, is_msf as is_pdb, is_pdb_file
from pykd_ext.layouts.pdb.streams import PdbIdentity
from pykd_ext.layouts.pdb.to_isf import PdbConversion, convert_pdb, pdb_to_isf

__all__ = ["MSF7_MAGIC", "PdbConversion", "PdbIdentity", "convert_pdb", "is_pdb", "is_pdb_file",
           "pdb_to_isf", "read_pdb_identity"]
