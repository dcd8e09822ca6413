"""The .deb `make package` builds (CPack), unpacked into a scratch root as dpkg would lay it
out: the files docs/operations.md ("Installing") promises, runtime-only dependencies,
conffiles, maintainer scripts that shellcheck accepts, a man page, and a binary that checks
the installed config."""

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import harness


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """(the .deb, the scratch root it was unpacked into), built from WSGATE_BIN's tree."""
    build = harness.wsgate_binary().parent
    out = tmp_path_factory.mktemp("package")
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
        assert shutil.which(tool), f"{tool} is missing: run packaging/install-deps.sh"
    run = subprocess.run(["cpack", "-G", "DEB", "-B", str(out),
                          "--config", str(build / "CPackConfig.cmake")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    debs = list(out.glob("wsgate_*.deb"))
    assert len(debs) == 1, (list(out.iterdir()), run.stdout)
    root = out / "root"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True, timeout=60)
    return debs[0], root


def field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


def test_the_package_lays_out_the_binary_config_units_man_page_and_docs(package):
    _, root = package
    expected = ["usr/bin/wsgate", "etc/wsgate/wsgate.yaml", "etc/logrotate.d/wsgate",
                "lib/systemd/system/wsgate.service", "lib/systemd/system/wsgate.socket",
                "usr/share/doc/wsgate/configuration.md", "usr/share/doc/wsgate/operations.md",
                "usr/share/doc/wsgate/lua.md",
                "usr/share/doc/wsgate/monitoring/prometheus/wsgate-alerts.yml",
                "usr/share/doc/wsgate/monitoring/grafana/wsgate-dashboard.json"]
    missing = [p for p in expected if not (root / p).is_file()]
    assert not missing, missing
    assert os.access(root / "usr/bin/wsgate", os.X_OK)
    man = [p for p in (root / "usr/share/man/man8").iterdir() if p.name.startswith("wsgate.8")]
    assert man, "no wsgate(8)"
    text = man[0].read_bytes()
    if man[0].suffix == ".gz":
        text = gzip.decompress(text)
    assert b".TH WSGATE 8" in text and b"@WSGATE_VERSION@" not in text
    # The config installed is the production starting point, not the demo, and it is valid.
    config = root / "etc/wsgate/wsgate.yaml"
    assert "production starting point" in config.read_text()
    check = subprocess.run([str(root / "usr/bin/wsgate"), "--check", "-c", str(config)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stderr


def test_the_package_depends_on_runtime_libraries_only(package):
    deb, _ = package
    depends = field(deb, "Depends")
    names = [d.strip().split(" ")[0] for d in depends.split(",")]
    for lib in ("libevent-core", "libssl3", "libyaml-cpp", "liblua5.4", "adduser"):
        assert any(n.startswith(lib) for n in names), depends
    assert not [n for n in names if n.endswith("-dev")], depends
    assert field(deb, "Package") == "wsgate"


def test_the_config_and_logrotate_stanza_are_conffiles_and_the_scripts_pass_shellcheck(
        package, tmp_path):
    deb, _ = package
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True, timeout=30)
    assert (control / "conffiles").read_text().split() == ["/etc/wsgate/wsgate.yaml",
                                                          "/etc/logrotate.d/wsgate"]
    scripts = [control / s for s in ("postinst", "prerm", "postrm")]
    for script in scripts:
        assert os.access(script, os.X_OK), script
    assert "adduser --system" in (control / "postinst").read_text()
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run packaging/install-deps.sh"
    run = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
