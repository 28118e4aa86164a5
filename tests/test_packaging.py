"""The wheel: one import package with the page and the patch note inside, and it serves the page
installed into a fresh virtualenv, run from another folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx
import pytest

from tests.live import ROOT, LiveServer

PACKAGE_DIRS = {"server": "sdxl_breeder", "patches": "sdxl_breeder/patches", "static": "sdxl_breeder/static"}
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "artifacts",
                                    "data", "bench-results", ".pytest_cache", ".hypothesis")


def _setuptools_major() -> int:
    try:
        return int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel .` of a copy of this checkout (an in-tree build would leave build/ behind)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    # with the test extra's setuptools this needs no network; without it pip fetches one from PyPI
    offline = ["--no-build-isolation"] if _setuptools_major() >= 77 else []
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--quiet", *offline,
                        "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=80)
    assert r.returncode == 0, f"pip wheel failed:\n{r.stdout}\n{r.stderr}"
    (built,) = (tmp / "dist").glob("sdxl_breeder-*.whl")
    return built


def _shipped(folder: str) -> set[str]:
    """What the checkout's `folder` must put in the wheel: its source and page files."""
    base = ROOT / folder
    return {f"{PACKAGE_DIRS[folder]}/{p.relative_to(base).as_posix()}" for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".html", ".css", ".js", ".md")}


@pytest.mark.timeout(90)  # each takes ~5-20 s; a busy machine gets headroom, a stuck build fails fast
def test_wheel_holds_one_package_with_the_page_and_the_patch_note(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"sdxl_breeder"}, sorted(top)
    assert "sdxl_breeder/static/index.html" in names and "sdxl_breeder/patches/README.md" in names
    assert any(re.fullmatch(r"sdxl_breeder/static/js/\w+\.js", n) for n in names)
    for folder in PACKAGE_DIRS:  # every module, subpackage and page file of the checkout is in the wheel
        missing = _shipped(folder) - names
        assert not missing, f"{folder}/ files missing from the wheel: {sorted(missing)}"


def _venv_with_wheel(wheel: Path, where: Path) -> Path:
    """A fresh virtualenv with the wheel installed (no editable checkout on its path); its
    dependencies come from this interpreter's site-packages through a .pth file, so nothing is
    downloaded. Returns the venv's bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    bindir = where / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    # every site-packages folder this interpreter sees (a venv may chain to another through a .pth);
    # as plain path lines, so the .pth files there (our editable install among them) are not run
    deps = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and os.path.isdir(p)]
    Path(purelib, "_sdxl_breeder_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                        "--no-index", str(wheel)], capture_output=True, text=True, timeout=80)
    assert r.returncode == 0, f"installing the wheel failed:\n{r.stdout}\n{r.stderr}"
    return bindir


@pytest.mark.timeout(90)  # each takes ~5-20 s; a busy machine gets headroom, a stuck build fails fast
def test_installed_wheel_serves_the_page_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    bindir = _venv_with_wheel(wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"  # no server/, static/ or patches/ here
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    where = subprocess.run([str(bindir / "python"), "-c", "import sdxl_breeder; print(sdxl_breeder.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout + where.stderr

    version = subprocess.run([str(bindir / "sdxl-breeder"), "--version"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and re.fullmatch(r"sdxl-breeder \d+\.\d+\.\d+\S*\n", version.stdout), version

    title = re.search(r"<title>(.+?)</title>", (ROOT / "static" / "index.html").read_text()).group(1)
    with LiveServer(tmp_path / "data", command=[str(bindir / "sdxl-breeder")], cwd=elsewhere, env=env,
                    startup_timeout=45) as live:
        page = httpx.get(live.http + "/", timeout=30)
        assert page.status_code == 200 and f"<title>{title}</title>" in page.text
        script = re.search(r'src="/?(js/[\w/]+\.js)"', page.text)
        assert script and httpx.get(f"{live.http}/{script.group(1)}", timeout=30).status_code == 200
        assert httpx.get(live.http + "/healthz", timeout=30).json()["status"] == "ok"
