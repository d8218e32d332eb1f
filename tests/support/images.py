"""Build, cache and push real OCI test images (no Docker engine needed).

Images are built with ``debootstrap``, ``pip``, ``npm`` and ``umoci`` into OCI image
layouts cached under :data:`CACHE_ROOT`, keyed by a recipe version.  Builds are safe
against concurrent builders (``flock`` on a lock file + build in a temp dir + atomic
``rename``).  :func:`push` copies a tag to a registry with ``skopeo``.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CACHE_ROOT = Path(
    os.environ.get("SUPPLYCHAIN_TEST_CACHE", Path.home() / ".cache" / "supplychain-tests")
)

# Bump a recipe version whenever the corresponding build recipe changes.
BASE_RECIPE = "debian-bookworm-minbase-v1"
PYTHON_BASE_RECIPE = "debian-bookworm-python-v1"
APP_RECIPE = "app-v1"
TINY_RECIPE = "tiny-v1"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What deploy/Containerfile needs in its base (it installs them itself when they are missing).
PYTHON_BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
PYTHON_SITE = "usr/local/lib/python3.11/site-packages"
PIP_PACKAGES = (
    "requests==2.19.0",
    "urllib3==1.23",
    "idna==2.7",
    "chardet==3.0.4",
    "certifi==2018.4.16",
    "jinja2==2.10",
)
NPM_PACKAGES = ("lodash@4.17.15", "minimist@1.2.0")
# What the 'app-deleted' tag removes on top of 'app'.
DELETED_PY_PATHS = ("jinja2", "Jinja2-2.10.dist-info")
PURGED_DEB_PACKAGE = "libsemanage-common"  # dpkg Source: libsemanage

DIGESTS_FILE = "digests.json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class ImageBuildError(RuntimeError):
    """A build step (debootstrap, pip, npm, umoci, skopeo) failed."""


def _run(words: str, *args: str | Path, timeout: float = 600.0, cwd: Path | None = None) -> str:
    """Run ``words.split() + args`` (args are never split) and return its stdout."""
    cmd = [*words.split(), *map(str, args)]
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise ImageBuildError(f"tool not installed: {cmd[0]}") from exc
    if proc.returncode != 0:
        raise ImageBuildError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def layout_digest(layout: Path, tag: str) -> str:
    """Manifest digest (``sha256:...``) of ``tag`` in the OCI layout's index.json."""
    for desc in _load_json(layout / "index.json").get("manifests", []):
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return str(desc["digest"])
    raise KeyError(f"tag {tag!r} not found in {layout}")


def tag_digests(layout: Path) -> dict[str, str]:
    """The ``{tag: digest}`` map recorded next to a cached layout at build time."""
    data: dict[str, str] = _load_json(layout.parent / DIGESTS_FILE)
    return data


def read_blob(layout: Path, digest: str) -> bytes:
    algo, _, hexdigest = digest.partition(":")
    return (layout / "blobs" / algo / hexdigest).read_bytes()


def manifest(layout: Path, tag: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(read_blob(layout, layout_digest(layout, tag)))
    return data


def layer_paths(layout: Path, tag: str) -> list[Path]:
    """Blob paths of the (gzip) layers of ``tag``, bottom first."""
    return [
        layout / "blobs" / Path(*str(d["digest"]).split(":", 1))
        for d in manifest(layout, tag)["layers"]
    ]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(name: str, tags: tuple[str, ...], build: Callable[[Path, Path], None]) -> Path:
    """Return ``CACHE_ROOT/name/oci``, building it once via ``build(layout, workdir)``."""
    final = CACHE_ROOT / name
    layout = final / "oci"
    if (final / DIGESTS_FILE).is_file():
        return layout
    with _file_lock(CACHE_ROOT / f".{name}.lock"):
        if (final / DIGESTS_FILE).is_file():  # another process built it meanwhile
            return layout
        for stale in CACHE_ROOT.glob(f".tmp-{name}-*"):  # leftovers of crashed builds
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=CACHE_ROOT))
        try:
            work = staging / "work"
            work.mkdir()
            build(staging / "oci", work)
            shutil.rmtree(work)
            digests = {tag: layout_digest(staging / "oci", tag) for tag in tags}
            (staging / DIGESTS_FILE).write_text(json.dumps(digests, indent=2) + "\n")
            _run("chmod -R a+rX", staging)  # mkdtemp/umoci create 0700/0600
            if final.exists():  # incomplete remains without digests.json
                shutil.rmtree(final)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return layout


def cached_directory(name: str, build: Callable[[Path], None]) -> Path:
    """``CACHE_ROOT/name``, made once by ``build(directory)`` under a lock, in a temporary
    directory renamed into place when complete (a crashed build leaves nothing used)."""
    final = CACHE_ROOT / name
    marker = final / ".complete"
    if marker.is_file():
        return final
    with _file_lock(CACHE_ROOT / f".{name}.lock"):
        if marker.is_file():
            return final
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=CACHE_ROOT))
        try:
            build(staging)
            (staging / ".complete").touch()
            if final.exists():
                shutil.rmtree(final)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def _copy_layout(src: Path, dst: Path) -> None:
    """Copy an OCI layout, hard-linking the (immutable, content-addressed) blobs."""

    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link_or_copy)
    (dst / "index.json").unlink()
    shutil.copy2(src / "index.json", dst / "index.json")


def _build_base(layout: Path, work: Path, include: tuple[str, ...] = ()) -> None:
    _run("umoci init --layout", layout)
    _run("umoci new --image", f"{layout}:base")
    bundle = work / "bundle"
    _run("umoci unpack --image", f"{layout}:base", bundle)
    rootfs = bundle / "rootfs"
    started = time.monotonic()
    included = [f"--include={','.join(include)}"] if include else []
    try:
        _run(
            "debootstrap --variant=minbase", *included, DEBIAN_SUITE, rootfs, DEBIAN_MIRROR,
            timeout=1800,
        )  # fmt: skip
    except ImageBuildError as exc:
        log = rootfs / "debootstrap" / "debootstrap.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        raise ImageBuildError(
            f"debootstrap of {DEBIAN_SUITE} from {DEBIAN_MIRROR} failed after "
            f"{time.monotonic() - started:.0f}s: {exc}\n--- debootstrap.log ---\n{tail}"
        ) from exc
    # Like docker images: empty /dev, /proc, /sys, /run, /tmp, no apt caches, no host files.
    for host_file in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / host_file).unlink(missing_ok=True)
    for sub in ("dev", "proc", "sys", "run", "tmp", "var/cache/apt", "var/lib/apt/lists"):
        directory = rootfs / sub
        for child in directory.iterdir() if directory.is_dir() else ():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    created_by = " ".join(["debootstrap --variant=minbase", *included, DEBIAN_SUITE])
    _run("umoci repack --history.created_by", created_by, "--image", f"{layout}:base", bundle)
    path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    _run("umoci config --config.cmd /bin/bash --config.env", path, "--image", f"{layout}:base")
    _run("umoci gc --layout", layout)


def debian_base_layout() -> Path:
    """OCI layout with tag ``base``: Debian bookworm minbase as a single layer."""
    return _cached(BASE_RECIPE, ("base",), _build_base)


def debian_python_layout() -> Path:
    """OCI layout with tag ``base``: Debian bookworm minbase with Python 3.11, venv and the CA
    certificates (:data:`PYTHON_BASE_PACKAGES`) as a single layer: deploy/Containerfile's base
    where no public registry is reachable."""

    def build(layout: Path, work: Path) -> None:
        _build_base(layout, work, PYTHON_BASE_PACKAGES)

    return _cached(PYTHON_BASE_RECIPE, ("base",), build)


def _install_app_files(rootfs: Path, work: Path) -> None:
    site = rootfs / PYTHON_SITE
    _run(
        "python3 -m pip install --quiet --no-deps --no-compile --disable-pip-version-check"
        " --root-user-action=ignore --only-binary=:all: --python-version 3.11 --target",
        site,
        *PIP_PACKAGES,
    )
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with host shebangs
    app = work / "npm-app"
    app.mkdir()
    _run("npm install --no-audit --no-fund --ignore-scripts --prefix", app, *NPM_PACKAGES, cwd=app)
    shutil.copytree(app, rootfs / "app", symlinks=True)


def _purge_deb(rootfs: Path, package: str) -> None:
    """What ``dpkg --purge`` does to the filesystem, done from outside the rootfs."""
    info = rootfs / "var/lib/dpkg/info"
    status = rootfs / "var/lib/dpkg/status"
    stanzas = status.read_text(encoding="utf-8").split("\n\n")
    kept = [s for s in stanzas if not s.lstrip("\n").startswith(f"Package: {package}\n")]
    metas = [*info.glob(f"{package}.*"), *info.glob(f"{package}:*.*")]  # also pkg:arch.*
    lists = [m for m in metas if m.suffix == ".list"]
    if len(kept) != len(stanzas) - 1 or len(lists) != 1:
        raise ImageBuildError(f"package {package!r} not (singly) installed in {rootfs}")
    owned = [
        rootfs / line.lstrip("/")
        for line in lists[0].read_text(encoding="utf-8").splitlines()
        if line.strip("/ ")
    ]
    for path in sorted(owned, key=lambda p: len(p.parts), reverse=True):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()  # only directories nothing else owns files in
    for meta in metas:
        meta.unlink()
    status.write_text("\n\n".join(kept), encoding="utf-8")


def _build_app(layout: Path, work: Path) -> None:
    _copy_layout(debian_base_layout(), layout)
    bundle = work / "bundle"
    _run("umoci unpack --image", f"{layout}:base", bundle, timeout=1800)
    rootfs = bundle / "rootfs"
    _install_app_files(rootfs, work)
    image = f"{layout}:app"
    created_by = "pip install --target; npm install"
    _run("umoci repack --refresh-bundle --history.created_by", created_by, "--image", image, bundle)
    for rel in DELETED_PY_PATHS:
        shutil.rmtree(rootfs / PYTHON_SITE / rel)
    _purge_deb(rootfs, PURGED_DEB_PACKAGE)
    created_by = f"rm -r jinja2; dpkg --purge {PURGED_DEB_PACKAGE}"
    image = f"{layout}:app-deleted"
    _run("umoci repack --history.created_by", created_by, "--image", image, bundle)


def app_layout() -> Path:
    """OCI layout with tags ``base``, ``app`` (+ old PyPI/npm packages) and
    ``app-deleted`` (+ a layer deleting jinja2 and purging a Debian package)."""
    return _cached(APP_RECIPE, ("base", "app", "app-deleted"), _build_app)


TINY_FILES: dict[str, str] = {
    "etc/os-release": (
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
    ),
    "etc/debian_version": "12.10\n",
    f"{PYTHON_SITE}/urllib3-1.23.dist-info/METADATA": (
        "Metadata-Version: 2.1\nName: urllib3\nVersion: 1.23\n"
        "Summary: HTTP library with thread-safe connection pooling, file post, and more.\n"
        "License: MIT\n"
    ),
    f"{PYTHON_SITE}/urllib3-1.23.dist-info/INSTALLER": "pip\n",
    f"{PYTHON_SITE}/urllib3/__init__.py": '__version__ = "1.23"\n',
}


def write_layer_tar(
    path: Path, files: dict[str, bytes], modes: dict[str, int] | None = None
) -> None:
    """A layer tar holding ``files`` (path → content, mode 0644 unless ``modes`` says) and
    their parent directories."""
    mtime = 1_700_000_000
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(p) for f in files for p in Path(f).parents if str(p) != "."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            info.mode = (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))


def files_layout(
    layout: Path, tag: str, layers: list[dict[str, bytes]], modes: dict[str, int] | None = None
) -> Path:
    """A new OCI layout at ``layout`` whose image ``tag`` has one layer per ``layers`` item
    (bottom first), made by umoci like the other test images."""
    _run("umoci init --layout", layout)
    _run("umoci new --image", f"{layout}:{tag}")
    for index, files in enumerate(layers):
        tar = layout.parent / f".{layout.name}-layer{index}.tar"
        write_layer_tar(tar, files, modes)
        history = ["--history.created_by", f"test layer {index}"]
        _run("umoci raw add-layer", *history, "--image", f"{layout}:{tag}", tar)
        tar.unlink()
    _run("umoci gc --layout", layout)
    return layout


def _build_tiny(layout: Path, work: Path) -> None:
    _run("umoci init --layout", layout)
    _run("umoci new --image", f"{layout}:empty")
    write_layer_tar(work / "layer.tar", {k: v.encode() for k, v in TINY_FILES.items()})
    history = ["--history.created_by", "tiny test layer"]
    _run(
        "umoci raw add-layer --tag tiny", *history, "--image", f"{layout}:empty", work / "layer.tar"
    )
    _run("umoci rm --image", f"{layout}:empty")
    _run("umoci gc --layout", layout)


def tiny_layout() -> Path:
    """OCI layout with tag ``tiny``: one small layer (Debian 12 os-release, urllib3 1.23)."""
    return _cached(TINY_RECIPE, ("tiny",), _build_tiny)


def push(
    layout: Path, tag: str, dest: str, *, tls_verify: bool = False, creds: str | None = None
) -> str:
    """Copy ``oci:<layout>:<tag>`` to ``docker://<dest>`` unchanged (as ``creds``,
    ``user:password``, when given); return the pushed manifest digest (equal to
    :func:`layout_digest` since digests are preserved)."""
    with tempfile.TemporaryDirectory(prefix="skopeo-") as tmp:
        digestfile = Path(tmp) / "digest"
        _run(
            "skopeo copy --quiet --all --preserve-digests --format oci",
            f"--dest-tls-verify={'true' if tls_verify else 'false'}",
            *(["--dest-creds", creds] if creds else []),
            *("--digestfile", digestfile, f"oci:{layout}:{tag}", f"docker://{dest}"),
        )
        return digestfile.read_text().strip()


def docker_archive(layout: Path, tag: str, archive: Path, name: str) -> Path:
    """``oci:<layout>:<tag>`` as a ``docker save``-style archive named ``name`` (skopeo)."""
    _run("skopeo copy --quiet", f"oci:{layout}:{tag}", f"docker-archive:{archive}:{name}")
    return archive


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index_layout(dest: Path, platforms: dict[str, str]) -> Path:
    """A copy of :func:`app_layout` with tag ``multi``: an OCI image index of existing tags.

    ``platforms`` maps ``os/arch`` to a tag of the app layout; the blobs are hard links.
    """
    source = app_layout()
    shutil.copytree(source, dest, copy_function=os.link)
    manifests = []
    for platform, tag in platforms.items():
        os_name, arch = platform.split("/", 1)
        digest = layout_digest(source, tag)
        size = len(read_blob(source, digest))
        manifests.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"os": os_name, "architecture": arch},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, separators=(",", ":")
    ).encode()
    digest = sha256_digest(index)
    blob = dest / "blobs" / "sha256" / digest.removeprefix("sha256:")
    blob.write_bytes(index)
    top = json.loads((dest / "index.json").read_text())
    top["manifests"].append(
        {
            "mediaType": OCI_INDEX,
            "digest": digest,
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }
    )
    (dest / "index.json").unlink()  # a hard link to the cache's file: replace, don't write through
    (dest / "index.json").write_text(json.dumps(top))
    return dest
