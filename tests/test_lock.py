"""The locked install: requirements.lock pins every package a test install holds, and agrees with pyproject.toml
(every requirement of the package and its extras is pinned, at a version its range allows) and with the
Makefile's torch. ``make lock`` writes it; this says when it is due."""

from __future__ import annotations

import re

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import repo_root

ROOT = repo_root()


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"requirements.lock: {line!r} is not NAME==VERSION"
        key = canonicalize_name(name)
        assert key not in pins, f"requirements.lock pins {name} twice"
        pins[key] = Version(version.strip())
    return pins


def requirements() -> list[Requirement]:
    """What pyproject.toml asks for: the package's dependencies and every extra's (the dev install's set)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        found += [Requirement(r) for r in extra]
    return [r for r in found if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def test_every_requirement_is_pinned_within_its_range() -> None:
    pins = locked()
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{requirement.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[key], prereleases=True), (
            f"requirements.lock pins {requirement.name} {pins[key]}, outside pyproject.toml's {requirement.specifier}: "
            "run `make lock`"
        )


def test_the_lock_holds_the_torch_the_makefile_installs_and_the_installers() -> None:
    pins = locked()
    makefile_torch = re.search(r"^TORCH\s*:=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_torch is not None
    assert pins["torch"].public == Version(makefile_torch[1]).public
    assert {"pip", "setuptools"} <= set(pins)  # the installer's own versions are locked too


def test_the_makefile_installs_through_the_lock() -> None:
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"\$\(call install,\$\(VENV\),-c \$\(LOCK\)\)", text)
    assert "LOCK   := requirements.lock" in text
