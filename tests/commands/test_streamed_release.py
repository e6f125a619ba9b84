"""Scale (issue 10): `ps` and `peb --all` keep memory flat in the number of processes.

A streamed command hands out one process at a time; once its row is printed nothing may still
hold the decoded process (its structure, thread lists, page-table reader). The witness is the
Python object itself: a weak reference to each process taken when its row is decoded must be dead
(after a collection) by the time the next-but-one row has been produced.
"""
import argparse
import gc
import weakref
from typing import Any, Callable, List

import pytest

from pykd_ext.commands import peb as peb_command
from pykd_ext.commands import ps as ps_command
from pykd_ext.kernel import peb as peb_decoder
from pykd_ext.kernel.process import Process
from pykd_ext.session import Session


def _drain_checking_release(rows: Any, refs: List["weakref.ref[Any]"]) -> int:
    """Consume the rows one by one; after each, every object decoded two rows back is gone."""
    records = 0
    for row in rows:
        if row.record is None:
            continue
        records += 1
        gc.collect()
        assert all(ref() is None for ref in refs[:-2]), "a printed process is still held"
    return records


def test_ps_frees_each_process_after_its_row(cworld: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    refs: List["weakref.ref[Any]"] = []
    original: Callable[..., Any] = Process.record

    def record(self: Process, *args: Any, **kwargs: Any) -> Any:
        refs.append(weakref.ref(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Process, "record", record)
    result = ps_command.run(Session(cworld.path, quiet=True), argparse.Namespace(filters=[]))
    records = _drain_checking_release(result.iter_rows(), refs)
    assert records == len(refs) >= 3          # the world's System, lsass and others, each once


def test_peb_all_frees_each_user_process_after_its_row(cworld: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    refs: List["weakref.ref[Any]"] = []
    original = peb_decoder.decode_user_process

    def decode(user: Any, *args: Any, **kwargs: Any) -> Any:
        refs.append(weakref.ref(user))
        return original(user, *args, **kwargs)

    monkeypatch.setattr(peb_command, "decode_user_process", decode)
    args = argparse.Namespace(process=None, all=True, symbols32=None)
    result = peb_command.run(Session(cworld.path, quiet=True), args)
    records = _drain_checking_release(result.iter_rows(), refs)
    assert records == len(refs) >= 3
