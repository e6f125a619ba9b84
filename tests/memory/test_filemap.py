"""Read-only file mapping: zero-copy views, typed errors, close with views still alive."""
import pytest

from pykd_ext.errors import DumpFormatError, TargetError
from pykd_ext.memory.filemap import FileMap


def test_views_find_and_close(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" + b"\0" * 4093 + b"RSDSxyz")
    fmap = FileMap(str(path))
    assert fmap.size == 4103 and bytes(fmap.slice(0, 3)) == b"abc"
    assert fmap.find(b"RSDS") == 4096 and fmap.find(b"nope") == -1
    assert fmap.bytes_at(4100, 3) == b"xyz"
    held = fmap.slice(4096, 4)
    with pytest.raises(TypeError):
        held[0] = 0                      # read-only mapping
    fmap.close()                         # a view is still held: no error
    assert bytes(held) == b"RSDS"
    fmap.close()                         # idempotent
    other = FileMap(str(path))
    other.close()
    assert other.mm.closed


def test_open_errors(tmp_path):
    with pytest.raises(TargetError) as err:
        FileMap(str(tmp_path))
    assert "directory" in str(err.value)
    with pytest.raises(TargetError) as err:
        FileMap(str(tmp_path / "missing"))
    assert "cannot open" in str(err.value)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DumpFormatError):
        FileMap(str(tmp_path / "empty"))
