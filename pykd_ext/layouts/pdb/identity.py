"""A PDB's identity (GUID, age, machine) without reading its types.

Why separate: after a download, `symbols fetch` checks that the file is the PDB it asked for;
reading two small streams is enough for that.
"""
from pykd_ext.layouts.pdb.msf import MsfFile
from pykd_ext.layouts.pdb.streams import PdbIdentity, read_identity


def read_pdb_identity(path: str) -> PdbIdentity:
    """GUID and age of a PDB file; LayoutError (one line) if it is not a well-formed PDB."""
    with MsfFile(path) as msf:
        return read_identity(msf)
