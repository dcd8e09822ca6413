"""packaging/docker and packaging/kubernetes, checked where no Docker or cluster runs: the
files the Dockerfile copies exist, the command it runs starts wsgate on the config it copies,
and the Kubernetes manifests parse and agree with the config they carry (ports, probe paths,
drain timings)."""

import re
import shlex
import subprocess

import yaml

import harness

PACKAGING = harness.SOURCE_DIR / "packaging"
DOCKERFILE = PACKAGING / "docker" / "Dockerfile"


def instructions():
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert m, duration
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def test_the_dockerfile_builds_in_two_stages_and_runs_unprivileged_with_a_healthcheck():
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["debian:12 AS build", "debian:12-slim"], froms
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "packaging/install-deps.sh --build" in runs and "cpack -G DEB" in runs
    # Every file copied from the build context exists in the tree.
    for word, args in steps:
        if word == "COPY" and not args.startswith("--from"):
            *sources, _ = shlex.split(args)
            for src in sources:
                assert (harness.SOURCE_DIR / src).exists(), src
    settings = {word: args for word, args in steps}
    assert settings["USER"] == "wsgate"
    assert settings["STOPSIGNAL"] == "SIGTERM"
    assert "http://127.0.0.1:9900/status" in settings["HEALTHCHECK"]
    assert set(settings["EXPOSE"].split()) == {"8080", "9900"}


def test_the_containers_command_starts_wsgate_on_the_config_it_copies(tmp_path, wsgate_bin):
    """ENTRYPOINT + CMD, with the binary under test, on the config the image carries
    (listen addresses moved to free loopback ports): it serves, and /status answers on the
    admin port the HEALTHCHECK asks."""
    steps = dict(instructions())
    entrypoint = yaml.safe_load(steps["ENTRYPOINT"])
    cmd = yaml.safe_load(steps["CMD"])
    assert entrypoint == ["/usr/bin/wsgate"] and cmd == ["-c", "/etc/wsgate/wsgate.yaml"]
    config = yaml.safe_load((PACKAGING / "docker" / "wsgate.yaml").read_text())
    assert config["listeners"][0]["listen"] == "0.0.0.0:8080"
    assert config["admin"]["listen"] == "0.0.0.0:9900"
    config["listeners"][0]["listen"] = "127.0.0.1:0"
    config["admin"]["listen"] = "127.0.0.1:0"
    path = tmp_path / "wsgate.yaml"
    path.write_text(yaml.safe_dump(config))
    gate = harness.Wsgate(wsgate_bin, tmp_path, label="container")
    gate._spawn([str(wsgate_bin), cmd[0], str(path)])
    try:
        admin = int(gate.wait_line(r"admin listening address=127\.0\.0\.1:(\d+)").group(1))
        gate.wait_line(r"\bready\b")
        status, _ = harness.admin_request(admin, "GET", "/status")
        assert status == 200
    finally:
        gate.stop()


def manifests():
    docs = {}
    for path in sorted((PACKAGING / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_the_kubernetes_manifests_agree_with_the_config_they_carry(tmp_path, wsgate_bin):
    docs = manifests()
    assert set(docs) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    text = docs["ConfigMap"]["data"]["wsgate.yaml"]
    config = yaml.safe_load(text)
    # The config is valid as wsgate reads it, and reloads when the mounted file changes.
    (tmp_path / "wsgate.yaml").write_text(text)
    check = subprocess.run([str(wsgate_bin), "--check", "-c", str(tmp_path / "wsgate.yaml")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert (check.returncode, check.stdout.strip()) == (0, "ok"), check.stderr
    assert config["watch"] is True

    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["public"] == int(config["listeners"][0]["listen"].rsplit(":", 1)[1])
    assert ports["admin"] == int(config["admin"]["listen"].rsplit(":", 1)[1])
    assert container["readinessProbe"]["httpGet"] == {"path": "/status", "port": "admin"}
    # The config is mounted where the args name it.
    mount = container["volumeMounts"][0]
    assert container["args"] == ["-c", mount["mountPath"] + "/wsgate.yaml"]
    assert pod["volumes"][0]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    # The drain fits in the grace period, with time for the 1012s and the closes.
    drain = seconds(config["timeouts"]["drain"])
    assert pod["terminationGracePeriodSeconds"] > drain + 5
    assert seconds(config["timeouts"]["drain_spread"]) < drain
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -TERM 1" in pre_stop

    labels = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert docs["Deployment"]["spec"]["template"]["metadata"]["labels"] == labels
    assert docs["Service"]["spec"]["selector"] == labels
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert [p["targetPort"] for p in docs["Service"]["spec"]["ports"]] == ["public"]
