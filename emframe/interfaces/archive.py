"""Reading the arrays of a model file with bounded memory, before trusting anything in it.

A model file is a ZIP archive of ``.npy`` entries (what :func:`numpy.savez` writes).
``numpy.load`` would allocate whatever an entry's header declares (a 3 KB file can
declare a shape of 2**40) and re-read an entry every time it is asked for. Here:

* the ZIP directory is checked first: only stored or deflated, unencrypted entries;
  a stored entry's size equals its compressed size, a deflated one is at most what
  deflate can expand to (1032:1), and the compressed sizes of all entries together fit
  in the file (so entries cannot share, and re-expand, the same bytes);
* each ``.npy`` header is read and its shape and dtype checked against the entry's
  size before the data are read: the data are exactly ``prod(shape) * itemsize`` bytes,
  computed in Python integers;
* object arrays (which need pickle) are refused, never unpickled;
* every entry is read at most once; the arrays returned are read-only, so an entry
  referenced several times is one array in memory.

So reading a file never allocates much more than the file's size (at most the
expansion deflate allows).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import Any

import numpy as np

#: Largest expansion of deflate (RFC 1951): 258 bytes per 2 bits, about 1032:1.
_DEFLATE_MAX_RATIO = 1032
_NPY_MAGIC = b"\x93NUMPY"


class Archive:
    """The ``.npy`` entries of a ``.npz`` file, read safely and once each.

    Parameters
    ----------
    name : str
        Path of the file; it is named in every error.

    Raises
    ------
    ValueError
        If the file is not a ZIP archive, or its directory declares sizes the
        file cannot hold.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cache: dict[str, np.ndarray] = {}
        size = os.path.getsize(name)
        with open(name, "rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
        if head == _NPY_MAGIC:
            raise ValueError(f"{name!r} is not an emframe model file: it is a single .npy "
                             "array, not an .npz archive")
        try:
            self._zip = zipfile.ZipFile(name)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ValueError(f"{name!r} is not an emframe model file: cannot read it as .npz "
                             f"({exc})") from None
        try:
            self._infos = self._check_directory(size)
        except BaseException:
            self._zip.close()
            raise

    def _check_directory(self, size: int) -> dict[str, zipfile.ZipInfo]:
        infos: dict[str, zipfile.ZipInfo] = {}
        compressed = 0
        for info in self._zip.infolist():
            what = f"{self.name!r} is corrupted: entry {info.filename!r}"
            if info.flag_bits & 0x1:
                raise ValueError(f"{what} is encrypted")
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise ValueError(f"{what} declares {info.file_size} bytes but stores "
                                     f"{info.compress_size}")
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                if info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 1024:
                    raise ValueError(f"{what} declares {info.file_size} bytes, more than "
                                     f"{info.compress_size} deflated bytes can hold")
            else:
                raise ValueError(f"{what} uses an unsupported compression method "
                                 f"({info.compress_type}); emframe writes stored entries")
            compressed += info.compress_size
            if compressed > size:
                raise ValueError(f"{self.name!r} is corrupted: its entries declare more data "
                                 f"than the file's {size} bytes")
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            infos[key] = info
        return infos

    @property
    def files(self) -> list[str]:
        """Names of the entries (without ``.npy``)."""
        return list(self._infos)

    def __contains__(self, key: object) -> bool:
        return key in self._infos

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def array(self, key: str) -> np.ndarray:
        """The entry ``key`` as a read-only array (the same object on every call).

        Raises
        ------
        ValueError
            If there is no such entry, or it is not a plain ``.npy`` array whose
            header agrees with its size, or it is corrupted.
        """
        if key in self._cache:
            return self._cache[key]
        info = self._infos.get(key)
        if info is None:
            raise ValueError(f"{self.name!r} is corrupted: the array entry {key!r} is missing")
        try:
            arr = self._read(info, key)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError(f"{self.name!r} is corrupted: cannot read entry {key!r} ({exc})"
                             ) from None
        arr.flags.writeable = False
        self._cache[key] = arr
        return arr

    def _read(self, info: zipfile.ZipInfo, key: str) -> np.ndarray:
        def bad(msg: str) -> ValueError:
            return ValueError(f"{self.name!r}: cannot read entry {key!r} safely: {msg}")

        with self._zip.open(info) as fp:
            try:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
                else:
                    raise ValueError(f".npy format version {version} is not supported")
            except ValueError as exc:
                raise bad(f"not a valid .npy array ({exc})") from None
            if dtype.hasobject:
                raise bad("it is an object array, which would need pickle; emframe files "
                          "never hold one")
            header = fp.tell()
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            if header + nbytes != info.file_size or count > info.file_size:
                raise bad(f"its header declares shape {shape} of {dtype} ({nbytes} bytes), "
                          f"but the entry holds {info.file_size - header} bytes of data")
            data = fp.read(nbytes)
        if len(data) != nbytes:
            raise bad("the data are truncated")
        if dtype.itemsize == 0:
            flat = np.zeros(count, dtype=dtype)
        else:
            flat = np.frombuffer(data, dtype=dtype, count=count)
        return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
