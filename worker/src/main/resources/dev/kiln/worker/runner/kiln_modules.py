"""Imports packages' modules from the image's module bundles (PROTOCOL.md).

Under gVisor every system call is a round trip to the sandbox's kernel, and
Python's path finder makes about eight for each module it imports (numpy and
pandas: about 7,000, a second of a runner's start). Each wheel layer holds its
.py sources in one bundle file under /kiln/modules, and its byte-code layer the
same modules' byte code in another. install() maps them all, once, and puts a
finder in sys.path_importer_cache for every directory they hold modules of.

That finder is Python's own FileFinder for the directory, so sys.path order,
pkgutil and everything else that knows FileFinder stay as they were; it only
answers first for a module the bundles hold (byte code if present, else the
source, compiled in memory) when no extension module of the same name could
win. Everything else (extension modules, data files, tests, namespace
packages) goes the usual way. Modules keep their real __file__, so
tracebacks, inspect and package resources read the files in the image.
"""

import sys

_MAGIC = b"KILNMB1\n"
_SOURCE, _BYTECODE, _OTHER = 0, 1, 2


def install(directory):
    """Serves modules from every bundle in directory (kiln_runner.module_bundles
    says which). Returns how many directories got a finder: 0 without bundles,
    and on any problem with them (the normal path finder then works as it
    always does)."""
    import os
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return 0
    dirs = {}
    for name in names:
        if name.endswith(".kmb"):
            try:
                _read(os.path.join(directory, name), dirs)
            except (OSError, ValueError) as e:
                sys.stderr.write("kiln_modules: %s is skipped: %s\n" % (name, e))
    return _finders(dirs)


def _read(path, dirs):
    import mmap
    import os
    from _struct import unpack_from
    with open(path, "rb") as f:
        data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    if data[:8] != _MAGIC:
        raise ValueError("not a module bundle")
    count, = unpack_from("<I", data, 8)
    at = 12
    split = os.path.split
    for _ in range(count):
        kind, length = unpack_from("<BH", data, at)
        at += 3
        file = str(data[at:at + length], "utf-8")
        at += length
        offset, size = unpack_from("<QQ", data, at)
        at += 16
        if offset + size > len(data):
            raise ValueError("an entry runs past the end")
        parent, base = split(file)
        if kind == _OTHER:
            name = base.partition(".")[0]
            if name == "__init__":
                # An extension package: the path finder's, under the directory's name.
                parent, name = split(parent)
            _entry(dirs, parent, name)[3] = True
            continue
        if kind not in (_SOURCE, _BYTECODE) or not base.endswith(".py"):
            continue
        package = base == "__init__.py"
        if package:
            parent, name = split(parent)
        else:
            name = base[:-3]
        e = _entry(dirs, parent, name)
        if package and not e[2]:
            # A package wins over a module of the same name, as with the path finder.
            e[0] = e[1] = None
            e[2] = True
        elif e[2] and not package:
            continue
        e[kind] = data[offset:offset + size]


def _entry(dirs, parent, name):
    entries = dirs.get(parent)
    if entries is None:
        entries = dirs[parent] = {}
    e = entries.get(name)
    if e is None:
        # source, byte code, is a package, left to the path finder
        e = entries[name] = [None, None, False, False]
    return e


def _finders(dirs):
    if not dirs:
        return 0
    import importlib._bootstrap_external as external
    import importlib.machinery as machinery
    import importlib.util as util
    import marshal
    import os

    magic = util.MAGIC_NUMBER
    join = os.path.join

    class BundleLoader(machinery.SourceFileLoader):
        """A source file's loader whose code comes from a bundle."""

        def __init__(self, fullname, path, source, bytecode):
            super().__init__(fullname, path)
            self._source = source
            self._bytecode = bytecode

        def get_code(self, fullname):
            pyc = self._bytecode
            if pyc is not None and pyc[:4] == magic:
                return marshal.loads(pyc[16:])
            if self._source is not None:
                return compile(bytes(self._source), self.path, "exec", dont_inherit=True)
            return super().get_code(fullname)

        def get_source(self, fullname):
            if self._source is not None:
                return util.decode_source(bytes(self._source))
            return super().get_source(fullname)

    class BundleFinder(machinery.FileFinder):
        """The directory's FileFinder, answering first for modules in bundles."""

        def __init__(self, path, entries, details):
            super().__init__(path, *details)
            self._entries = entries

        def find_spec(self, fullname, target=None):
            e = self._entries.get(fullname.rpartition(".")[2])
            if e is None or e[3] or (e[0] is None and e[1] is None):
                return super().find_spec(fullname, target)
            tail = fullname.rpartition(".")[2]
            if e[2]:
                package = join(self.path, tail)
                file = join(package, "__init__.py")
                locations = [package]
            else:
                file = join(self.path, tail + ".py")
                locations = None
            return util.spec_from_file_location(
                fullname,
                file,
                loader=BundleLoader(fullname, file, e[0], e[1]),
                submodule_search_locations=locations)

    details = external._get_supported_file_loaders()
    cache = sys.path_importer_cache
    for path, entries in dirs.items():
        cache[path] = BundleFinder(path, entries, details)
    return len(dirs)
