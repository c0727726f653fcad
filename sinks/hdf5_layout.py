"""The on-disk table layout every HDF5 file of the harness uses: one that pandas, PyTables, h5py
and the HDF5 1.10 command-line tools all open.

Why each choice:

* **Format bounds v110..v110** (``LIBVER``). SWMR needs at least the 1.10 format; anything newer
  (``libver="latest"`` under HDF5 2.0) writes datatype messages that HDF5 1.10/1.14 -- Debian's
  h5dump, PyTables' bundled library, pandas through PyTables -- reject.
* **Each table is a group holding one dataset named ``table``** (``/trades/table``): a 1-D,
  chunked, extendible compound dataset carrying PyTables' Table attributes (``CLASS="TABLE"``,
  ``VERSION``, ``TITLE``, ``FIELD_<n>_NAME``), its group and the root marked as PyTables groups.
  PyTables opens it as a ``Table``; pandas' ``HDFStore.keys()`` lists a group when it has a
  child named ``table`` with rows, and ``pd.read_hdf(path, "trades")`` reads it as a
  "generic_table". Like pandas' own format (which writes nothing for an empty frame), pandas
  treats a table without rows as absent: it is not in ``keys()`` and ``read_hdf`` refuses it
  (marking the group with ``pandas_type`` would list it, but pandas then fails to read it).
* **Only scalar columns on disk.** pandas cannot read a column that holds an array, so an array
  field of the writer's dtype (``("bid_px", "f8", (10,))``) is stored as ten scalar columns
  ``bid_px_0 .. bid_px_9`` -- the same bytes, so writing and reading are a zero-copy ``view`` --
  and the table attribute ``array_columns`` (JSON ``{"bid_px": [10]}``) lets the project's reader
  give the array back.
* **Booleans are 8-bit bitfields** (PyTables' own bool type; pandas reads them as ``bool``; h5py
  shows ``uint8``), again the same byte as numpy's ``bool``.
* **Strings are fixed-width UTF-8** (``CSET_UTF8``, null-padded): SWMR cannot grow variable-length
  data, and fixed width is what PyTables/pandas read as text.
* **Units travel with the data:** every time column has the PyTables column attribute
  ``FIELD_<n>_ATTR_unit`` (``table.cols.time_ms.attrs.unit`` in PyTables), in CF/UDUNITS form:
  ``"milliseconds since 1970-01-01 00:00:00 UTC"`` for timestamps, ``"milliseconds"`` for
  durations.
* **Every chunk carries a Fletcher-32 checksum** (after shuffle and gzip), so damaged data is an
  error when read, never silently different numbers.

Nothing here pickles: attributes are numbers, fixed-length ASCII strings and UTF-8 JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

#: Lowest and highest file-format versions the files use: readable by HDF5 1.10 and later.
LIBVER = ("v110", "v110")
#: Name of the dataset inside each table's group (pandas and PyTables look for it).
TABLE_NODE = "table"
#: PyTables' version strings for the attributes it reads.
PYTABLES_FORMAT_VERSION = "2.1"
PYTABLES_TABLE_VERSION = "2.7"
PYTABLES_GROUP_VERSION = "1.0"
#: Table attribute naming the array fields that were stored as scalar columns.
ARRAY_COLUMNS_ATTR = "array_columns"

EPOCH = " since 1970-01-01 00:00:00 UTC"
_UNIT_WORDS = {"_ns": "nanoseconds", "_ms": "milliseconds", "_us": "microseconds"}
#: Time columns of the pipeline's tables that hold a length of time, not a point in time.
DURATION_COLUMNS = frozenset({"window_ms", "window_ns", "lateness_ms"})
#: Column kinds every reader handles (bool, signed/unsigned integers, floats, byte strings).
_PORTABLE_KINDS = "biufS"


class LayoutError(ValueError):
    """A dtype that cannot be stored portably (object, unicode, nested, datetime, ...)."""


def utf8_attr(text: str) -> np.ndarray:
    """A fixed-length UTF-8 string attribute value (PyTables reads it as ``str``, not bytes)."""
    raw = text.encode()
    return np.array(raw, dtype=h5py.string_dtype("utf-8", max(1, len(raw))))


def table_path(name: str) -> str:
    """Where table ``name`` lives in a file: ``<name>/table``."""
    return f"{name}/{TABLE_NODE}"


def time_units(dtype: np.dtype, durations: frozenset[str] = DURATION_COLUMNS) -> dict[str, str]:
    """Units of the columns named ``*_ns``, ``*_us``, ``*_ms``: points in time since the epoch,
    except the columns named in ``durations``."""
    units: dict[str, str] = {}
    for name in dtype.names or ():
        word = _UNIT_WORDS.get(name[-3:])
        if word is not None:
            units[name] = word if name in durations else word + EPOCH
    return units


def _scalar(dt: np.dtype, table: str, column: str) -> np.dtype:
    if dt.kind not in _PORTABLE_KINDS or dt.names is not None:
        raise LayoutError(
            f"table {table!r}, column {column!r}: dtype {dt} cannot be stored portably; use "
            "bool, integers, floats or fixed-width UTF-8 bytes ('S<n>')"
        )
    if dt.kind == "S" and dt.itemsize == 0:
        raise LayoutError(f"table {table!r}, column {column!r}: a string column needs a width")
    if dt.byteorder == ">":  # rows are written as raw bytes into little-endian columns
        raise LayoutError(f"table {table!r}, column {column!r}: big-endian {dt}; use native")
    return dt


@dataclass(frozen=True)
class TableLayout:
    """How one table's rows map to disk.

    ``dtype`` is what writers append and the project's reader returns (array fields, ``bool``);
    ``stored`` is the same bytes seen as flat scalar columns (``bool`` as ``uint8``), which is
    what h5py, PyTables and pandas see.
    """

    dtype: np.dtype
    stored: np.dtype
    arrays: dict[str, list[int]]

    @classmethod
    def of(cls, dtype: np.dtype, table: str = "") -> TableLayout:
        dtype = np.dtype(dtype)
        if dtype.names is None:
            raise LayoutError(f"table {table!r} needs a structured dtype, not {dtype}")
        names: list[str] = []
        formats: list[np.dtype] = []
        offsets: list[int] = []
        arrays: dict[str, list[int]] = {}
        for name in dtype.names:
            field, offset = dtype.fields[name][:2]  # type: ignore[index]
            if field.subdtype is not None:
                base, shape = field.subdtype
                _scalar(base, table, name)
                arrays[name] = [int(n) for n in shape]
                for i, index in enumerate(np.ndindex(*shape)):
                    names.append(f"{name}_" + "_".join(str(k) for k in index))
                    formats.append(np.dtype("u1") if base.kind == "b" else base)
                    offsets.append(offset + i * base.itemsize)
            else:
                _scalar(field, table, name)
                names.append(name)
                formats.append(np.dtype("u1") if field.kind == "b" else field)
                offsets.append(offset)
        if len(set(names)) != len(names):
            raise LayoutError(f"table {table!r}: flattened column names collide: {names}")
        stored = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": dtype.itemsize}
        )
        return cls(dtype, stored, arrays)

    @property
    def bool_columns(self) -> frozenset[str]:
        out = set()
        for name in self.dtype.names or ():
            field = self.dtype.fields[name][0]  # type: ignore[index]
            base = field.subdtype[0] if field.subdtype else field
            if base.kind == "b":
                out.update(self._stored_names(name))
        return frozenset(out)

    def _stored_names(self, field: str) -> list[str]:
        if field not in self.arrays:
            return [field]
        return [f"{field}_" + "_".join(map(str, i)) for i in np.ndindex(*self.arrays[field])]

    def file_type(self) -> h5t.TypeCompoundID:
        """The HDF5 compound type: same offsets as ``stored``, bitfield bools, UTF-8 strings."""
        compound = h5t.create(h5t.COMPOUND, self.stored.itemsize)
        bools = self.bool_columns
        for name in self.stored.names or ():
            field, offset = self.stored.fields[name][:2]  # type: ignore[index]
            if name in bools:
                member = h5t.STD_B8LE
            elif field.kind == "S":
                member = h5t.C_S1.copy()
                member.set_size(field.itemsize)
                member.set_cset(h5t.CSET_UTF8)
                member.set_strpad(h5t.STR_NULLPAD)
            else:
                member = h5t.py_create(field.newbyteorder("<"))
            compound.insert(name.encode(), offset, member)
        return compound

    def attributes(self, title: str, units: Mapping[str, str]) -> dict[str, Any]:
        """PyTables' Table attributes, column units and the array map."""
        attrs: dict[str, Any] = {
            "CLASS": np.bytes_("TABLE"),
            "VERSION": np.bytes_(PYTABLES_TABLE_VERSION),
            "TITLE": np.bytes_(title),
        }
        for i, name in enumerate(self.stored.names or ()):
            attrs[f"FIELD_{i}_NAME"] = np.bytes_(name)
        for field, unit in units.items():
            for name in self._stored_names(field):
                i = self.stored.names.index(name)  # type: ignore[union-attr]
                attrs[f"FIELD_{i}_ATTR_unit"] = utf8_attr(unit)
        if self.arrays:
            attrs[ARRAY_COLUMNS_ATTR] = json.dumps(self.arrays)
        return attrs


def mark_group(group: h5py.Group, title: str = "") -> None:
    """PyTables' group attributes (the root also gets the file-format version)."""
    if group.name == "/":
        group.attrs["PYTABLES_FORMAT_VERSION"] = np.bytes_(PYTABLES_FORMAT_VERSION)
    group.attrs["CLASS"] = np.bytes_("GROUP")
    group.attrs["VERSION"] = np.bytes_(PYTABLES_GROUP_VERSION)
    group.attrs["TITLE"] = np.bytes_(title)


def create_table(
    parent: h5py.Group,
    name: str,
    dtype: np.dtype,
    *,
    rows_per_chunk: int,
    gzip_level: int | None = 1,
    units: Mapping[str, str] | None = None,
    title: str = "",
    rows: np.ndarray | None = None,
) -> h5py.Dataset:
    """Create group ``name`` holding the extendible table dataset; optionally write ``rows``."""
    layout = TableLayout.of(dtype, name)
    group = parent.create_group(name)
    mark_group(group, title or name)
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_chunk((max(1, rows_per_chunk),))
    if gzip_level is not None:
        dcpl.set_shuffle()
        dcpl.set_deflate(gzip_level)
    dcpl.set_fletcher32()
    n = 0 if rows is None else len(rows)
    space = h5s.create_simple((n,), (h5s.UNLIMITED,))
    ds = h5py.Dataset(h5d.create(group.id, TABLE_NODE.encode(), layout.file_type(), space,
                                 dcpl=dcpl))
    for key, value in layout.attributes(title or name, units or {}).items():
        ds.attrs[key] = value
    if n:
        write_rows(ds, 0, rows, layout)  # type: ignore[arg-type]
    return ds


def write_rows(ds: h5py.Dataset, start: int, rows: np.ndarray, layout: TableLayout) -> None:
    """Write ``rows`` (``layout.dtype``) at ``start``; the dataset must already be that long."""
    rows = np.ascontiguousarray(rows, dtype=layout.dtype)
    if not len(rows):
        return
    file_space = ds.id.get_space()
    file_space.select_hyperslab((start,), (len(rows),))
    ds.id.write(h5s.create_simple((len(rows),)), file_space, rows, mtype=ds.id.get_type())


def layout_of(ds: h5py.Dataset) -> TableLayout:
    """The layout of an existing table dataset (bools from bitfields, arrays from the map)."""
    ftype = ds.id.get_type()
    names, formats, offsets = [], [], []
    for i in range(ftype.get_nmembers()):
        member = ftype.get_member_type(i)
        names.append(ftype.get_member_name(i).decode())
        offsets.append(ftype.get_member_offset(i))
        if member.get_class() == h5t.BITFIELD and member.get_size() == 1:
            formats.append(np.dtype("?"))
        elif member.get_class() == h5t.STRING:
            formats.append(np.dtype(f"S{member.get_size()}"))
        else:
            formats.append(member.dtype)
    arrays = json.loads(ds.attrs.get(ARRAY_COLUMNS_ATTR, "{}"))
    fields: list[tuple[str, Any, int]] = []
    grouped: set[str] = set()
    for field, shape in arrays.items():
        columns = [f"{field}_" + "_".join(map(str, k)) for k in np.ndindex(*shape)]
        first = names.index(columns[0])
        fields.append((field, (formats[first], tuple(shape)), offsets[first]))
        grouped.update(columns)
    fields += [f for f in zip(names, formats, offsets, strict=True) if f[0] not in grouped]
    fields.sort(key=lambda f: f[2])
    dtype = np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": ftype.get_size(),
        }
    )
    return TableLayout.of(dtype)


def read_rows(ds: h5py.Dataset, start: int, stop: int, layout: TableLayout) -> np.ndarray:
    """Rows ``start:stop`` as ``layout.dtype`` (raw bytes, no type conversion)."""
    out = np.empty(max(0, stop - start), layout.dtype)
    if len(out):
        file_space = ds.id.get_space()
        file_space.select_hyperslab((start,), (len(out),))
        ds.id.read(h5s.create_simple((len(out),)), file_space, out, mtype=ds.id.get_type())
    return out


def units_of(ds: h5py.Dataset) -> dict[str, str]:
    """Column -> unit, from the ``FIELD_<n>_ATTR_unit`` attributes (stored column names)."""
    names = ds.dtype.names or ()
    out = {}
    for i, name in enumerate(names):
        unit = ds.attrs.get(f"FIELD_{i}_ATTR_unit")
        if unit is not None:
            out[name] = unit.decode() if isinstance(unit, bytes) else str(unit)
    return out
