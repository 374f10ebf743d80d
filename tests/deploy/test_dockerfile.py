"""deploy/Dockerfile, read (it cannot be built here: no Docker engine): a uv builder stage
that syncs the locked, non-dev dependencies, a runtime stage with the venv only, non-root,
no build tools, a health check, `leadflow` as the entrypoint."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field

from tests.deploy.files import DOCKERFILE, ROOT, of_kind, pod_spec


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def stages() -> list[Stage]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continued lines
    args: dict[str, str] = {}
    result: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
            result.append(Stage(name.strip(), base.strip()))
        else:
            result[-1].instructions.append((keyword, rest.strip()))
    return result


def test_two_stages_on_one_python_that_the_project_accepts() -> None:
    builder, runtime = stages()
    assert (builder.name, runtime.name) == ("builder", "runtime")
    # The venv points at the interpreter by path: both stages must have the same one.
    assert builder.base == runtime.base
    version = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim-\w+", runtime.base)
    assert version, f"{runtime.base}: pin python:<major.minor.patch>-slim-<debian>"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(n) for n in re.findall(r"\d+", requires)[:2])
    assert (int(version.group(1)), int(version.group(2))) >= minimum


def test_builder_syncs_the_lock_without_dev_dependencies_with_the_pinned_uv() -> None:
    builder, _ = stages()
    runs = "\n".join(builder.args("RUN"))
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    (uv_version,) = re.findall(r'UV_VERSION="([^"]+)"', bootstrap)
    assert f"uv=={uv_version}" in runs
    syncs = re.findall(r"uv sync ([^&;\n]*)", runs)
    assert len(syncs) == 2
    for options in syncs:
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(options.split())
    assert "--no-install-project" in syncs[0], "dependencies first, in their own layer"


def test_builder_copies_every_package_of_the_wheel_and_only_what_exists() -> None:
    builder, _ = stages()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    copied: set[str] = set()
    for arg in builder.args("COPY"):
        *sources, _ = arg.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            copied.add(source)
    assert packages <= copied
    assert {"pyproject.toml", "uv.lock", pyproject["project"]["readme"]} <= copied


def test_runtime_is_non_root_without_build_tools_with_healthcheck_and_entrypoint() -> None:
    _, runtime = stages()
    (user,) = runtime.args("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    # Kubernetes runs the pods as the image's user.
    for doc in of_kind("Deployment") + of_kind("Job"):
        assert pod_spec(doc)["securityContext"]["runAsUser"] == int(uid), doc.name
    runs = " ".join(runtime.args("RUN"))
    for tool in ("apt-get", "pip ", "uv ", "gcc", "build-essential", "curl"):
        assert tool not in runs, f"{tool!r} in the runtime stage"
    copies = runtime.args("COPY")
    assert copies and all(c.startswith("--from=builder") for c in copies), copies
    assert json.loads(runtime.args("ENTRYPOINT")[0]) == ["leadflow"]
    assert json.loads(runtime.args("CMD")[0]) == ["api"]
    (healthcheck,) = runtime.args("HEALTHCHECK")
    assert "/health" in healthcheck and "--timeout=" in healthcheck
    env = " ".join(runtime.args("ENV"))
    assert "PATH=/opt/leadflow/venv/bin:$PATH" in env
