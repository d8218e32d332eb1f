"""Files catalogued one by one as a layer streams past (``LayerCataloger.per_file``: the dpkg
file lists and copyright files, executables, language metadata and archives), handed by the
layer readers to the thread that waits for them: the SBOM must be the one the whole-layer
path gives, a file that breaks its cataloger must cost only itself, and an upper layer's file
must still replace a lower one's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sbom import generate_sbom
from sbom.interface import CATALOGERS, FileEntry, LayerCataloger, OSInfo, Package
from sbom.local import read_local
from tests.support.images import app_layout
from tests.test_sbom_layers import IMAGE, layer, tar_bytes


class _WholeLayer(LayerCataloger):
    """A registered cataloger as it ran before ``per_file``: every file at the layer's end."""

    def __init__(self, inner: LayerCataloger) -> None:
        self.inner = inner
        self.name, self.version = inner.name, inner.version
        self.os_packages, self.max_size = inner.os_packages, inner.max_size

    def wants(self, path: str) -> bool:
        return self.inner.wants(path)

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        return self.inner.catalog(files, os_info)


class _Breaks(LayerCataloger):
    """Reads ``name version`` files one by one (an empty file names no package); raises on
    the file named ``boom``."""

    name, version = "breaks", 1

    def wants(self, path: str) -> bool:
        return path.startswith("pkgs/")

    def per_file(self, path: str) -> bool:
        return True

    def catalog(
        self, files: Sequence[FileEntry], os_info: OSInfo | None
    ) -> Mapping[str, list[Package]]:
        found = {}
        for entry in files:
            if entry.path.endswith("boom"):
                raise RecursionError("a parser bug")
            words = entry.data.decode().split()
            found[entry.path] = [Package("generic", *words, path=entry.path)] if words else []
        return found


_SAMPLE_PATHS = (
    "usr/share/doc/bash/copyright",
    "usr/bin/app",
    "var/lib/dpkg/info/bash.list",
    "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
    "app/node_modules/left-pad/package.json",
    "opt/app/lib/app.jar",
    "usr/share/rubygems-integration/all/specifications/rack-2.2.gemspec",
    "app/vendor/composer/installed.json",
)


def test_the_test_image_gives_the_same_sbom_either_way() -> None:
    per_file = [c for c in CATALOGERS.values() if any(c.per_file(p) for p in _SAMPLE_PATHS)]
    assert {c.name for c in per_file} == {
        "dpkg", "gobinary", "rustbinary", "python", "npm", "jar", "gemspec", "composer-installed"
    }  # fmt: skip
    layers, info, _ = read_local(f"oci:{app_layout()}:app-deleted")
    streamed = generate_sbom(layers, info, None)
    whole = generate_sbom(
        layers, info, None, catalogers=[_WholeLayer(c) for c in CATALOGERS.values()]
    )
    assert len(streamed.packages) > 90
    assert streamed.packages == whole.packages  # licences, owned files and layers included
    assert sorted(streamed.warnings) == sorted(whole.warnings)


def test_a_file_that_breaks_its_cataloger_costs_only_itself(tmp_path: Path) -> None:
    data = tar_bytes(("pkgs/a", b"alpha 1.0"), ("pkgs/boom", b"x"), ("pkgs/c", b"gamma 3.0"))
    result = generate_sbom([layer(tmp_path, "one", data)], IMAGE, None, catalogers=[_Breaks()])
    assert {(p.name, p.version) for p in result.packages} == {("alpha", "1.0"), ("gamma", "3.0")}
    assert any(
        w.startswith("pkgs/boom: cataloger breaks could not read it") for w in result.warnings
    )


def test_an_upper_layers_file_still_replaces_the_lower_ones(tmp_path: Path) -> None:
    lower = layer(tmp_path, "lower", tar_bytes(("pkgs/a", b"alpha 1.0"), ("pkgs/b", b"beta 2.0")))
    upper = layer(tmp_path, "upper", tar_bytes(("pkgs/a", b"")))
    alone = generate_sbom([lower], IMAGE, None, catalogers=[_Breaks()])
    both = generate_sbom([lower, upper], IMAGE, None, catalogers=[_Breaks()])
    assert {p.name for p in alone.packages} == {"alpha", "beta"}
    assert {p.name for p in both.packages} == {"beta"}


def test_no_cataloger_wants_a_file_whose_extension_it_does_not_name() -> None:
    """The reader asks a cataloger only about the extensions it names: on every path of the
    test image, and on each cataloger's own file names in the places they live, a cataloger
    that would want a path names its extension."""
    import itertools
    import tarfile

    from sbom.generate import _OsFiles
    from sbom.interface import CATALOGERS, extension
    from sbom.local import oci_layout
    from tests.support.images import app_layout

    layers, _ = oci_layout(app_layout(), "app")
    paths: set[str] = set()
    for blob in layers:
        with tarfile.open(blob.path, "r|*") as tar:
            paths.update(member.name.lstrip("./") for member in tar)
    own_names = {
        "METADATA", "PKG-INFO", "x-1.0.egg-info", "x-1.0.egg", "X.JAR", "a.War", "app.Exe",
        "Cargo.lock", "Cargo.toml", "package.json", "installed.json", "rack.gemspec",
        "Packages", "Packages.db", "rpmdb.sqlite", "installed", "os-release", "debian_version",
        "alpine-release", "redhat-release", "status", "copyright", "libc6.list", "tool",
    }  # fmt: skip
    own_folders = {
        "usr/lib/python3/dist-packages/x-1.0.dist-info", "usr/lib/python3/x-1.0.egg/EGG-INFO",
        "var/lib/rpm", "usr/lib/sysimage/rpm", "lib/apk/db", "usr/lib/apk/db",
        "app/node_modules/left-pad", "vendor/composer", "usr/share/gems/specifications",
        "etc", "usr/lib", "var/lib/dpkg", "var/lib/dpkg/status.d", "usr/share/doc/libc6",
        "opt/app", "",
    }  # fmt: skip
    catalogers = [c for c in [*CATALOGERS.values(), _OsFiles()] if c.extensions is not None]
    assert len(catalogers) >= 10 and len(paths) > 5000
    names = {p.rpartition("/")[2] for p in paths}
    folders = {p.rpartition("/")[0] for p in paths}
    corpus = paths | {
        f"{d}/{n}".lstrip("/")
        for d, n in [
            *itertools.product(folders | own_folders, own_names),
            *itertools.product(own_folders, names),
        ]
    }
    wanted = 0
    for path in corpus:
        for cataloger in catalogers:
            if cataloger.wants(path):
                wanted += 1
                assert extension(path) in cataloger.extensions, (cataloger.name, path)  # type: ignore[operator]
    assert wanted > 1000
