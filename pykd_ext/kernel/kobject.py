"""`KernelObject`: what every decoded kernel structure object (process, thread, ...) shares.

One structure read once (a lazily created `StructView` of `TYPE_NAME` at `address`), fields
decoded by the layout's precompiled readers, derived values computed on demand and cached, and the
list of methods that found the object (psxview's cross-view). Subclasses add one property per field.
"""
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

from pykd_ext.kernel.view import StructView
from pykd_ext.memory.faults import Fault

if TYPE_CHECKING:
    from pykd_ext.kernel.context import KernelContext

Value = Union[int, str, bool, bytes, None, Fault]


class KernelObject:
    """A kernel structure of type `TYPE_NAME` at `address`, found by the methods in `found_by`."""

    #: the layout type this object decodes (set by subclasses)
    TYPE_NAME = ""

    def __init__(self, ctx: "KernelContext", address: int, found_by: Optional[List[str]] = None) -> None:
        self.ctx = ctx
        self.address = address
        self.found_by: List[str] = list(found_by or [])
        self._view: Optional[StructView] = None
        self._cache: Dict[str, Any] = {}

    def add_source(self, method: str) -> None:
        """Record one more method that found this object (kept in first-found order)."""
        if method not in self.found_by:
            self.found_by.append(method)

    @property
    def view(self) -> StructView:
        """The structure, read on first use."""
        if self._view is None:
            self._view = self.ctx.view(self.TYPE_NAME, self.address)
        return self._view

    def field(self, path: str) -> Value:
        """A field's value; None when this build's structure has no such field."""
        return self.view.get(path)

    def _set(self, path: str) -> bool:
        """True when the field exists, was readable and is non-zero (flag bits, pointers)."""
        value = self.field(path)
        return isinstance(value, int) and value != 0

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]
