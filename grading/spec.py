"""Grading specs: one TOML file per lab (``grading/specs/NN_topic.toml``) saying which exercises a
solution notebook holds, which names each defines, which tests grade it (public = a labsupport check
id, hidden = a function in the private hidden-tests overlay), their points, and the limits a
submission runs under. See grading/README.md for the format."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import site
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent  # this package: grading/ in a checkout, or installed (labgrade)
SPECS_DIR = PACKAGE / "specs"  # package data: an installed grader has them too
IMPORT_ROOT = PACKAGE.parent  # where `import grading` resolves: the checkout, or site-packages
# Installed into site-packages, subprocesses import grading as usual; a checkout or a copied tree (the
# Gradescope bundle's course/) goes on their PYTHONPATH (grading.sandbox.grading_env).
INSTALLED = IMPORT_ROOT in {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
GRADABLE_PROFILES = ("smoke", "offline")  # graders run CPU-only and never touch the network


class SpecError(ValueError):
    """A spec file is malformed; the message names the file and what to fix."""


def source_tree(package_dir: Path) -> Path | None:
    """The source checkout holding `package_dir` (grading/ or labsupport/), or None for an installed package.
    A checkout's root holds the course's pyproject.toml; site-packages never does."""
    root = Path(package_dir).resolve().parent
    return root if (root / "pyproject.toml").is_file() and (root / "labsupport").is_dir() else None


CHECKOUT = source_tree(PACKAGE)  # the repository this grader runs from, None when installed from a wheel


def source_trees() -> list[Path]:
    """The checkouts the grader's code and labsupport are imported from (none, one or two), without
    importing labsupport: graded code must not see their .git, notebooks, build outputs or overlay."""
    found = importlib.util.find_spec("labsupport")
    dirs = [PACKAGE] + ([Path(found.origin).parent] if found and found.origin else [])
    return sorted({t for t in map(source_tree, dirs) if t is not None})


def notebooks_dir(value: str | os.PathLike | None = None) -> Path:
    """Where the solution notebooks are: `value` (--notebooks), else notebooks/ of the checkout this grader
    runs from, else ./notebooks; an installed grader outside a checkout must be told."""
    if value is not None:
        return Path(value).absolute()
    for candidate in ([CHECKOUT / "notebooks"] if CHECKOUT else []) + [Path("notebooks").absolute()]:
        if candidate.is_dir():
            return candidate
    raise SpecError("no solution notebooks: pass --notebooks DIR (the folder holding NN_topic.ipynb), "
                    "or run from the course repository")


@dataclass(frozen=True)
class Limits:
    test_seconds: float = 10.0  # CPU seconds per test and for running an exercise's code (wall backstop 5x + 2 s)
    notebook_seconds: float = 300.0  # wall time for a whole submission
    memory_mb: int = 2048  # address space a test may add on top of the preloaded libraries
    processes: int = 64  # processes a submission may run at once
    output_mb: int = 16  # largest file (captured stdout included) a submission may write
    parse_seconds: float = 20.0  # wall time to read and extract one submission (a bounded subprocess)


@dataclass(frozen=True)
class TestSpec:
    name: str
    exercise: str
    points: float
    public: str | None = None  # labsupport check id ("01.2")
    hidden: str | None = None  # "test_file.py::test_func" inside the lab's hidden dir
    args: tuple[str, ...] = ()  # names handed to a public check (default: the exercise's defines)
    seconds: float | None = None  # overrides limits.test_seconds
    options: dict[str, Any] = field(default_factory=dict)  # rtol/atol/... passed to tests that ask for them

    @property
    def key(self) -> str:
        return f"{self.exercise}/{self.name}"

    @property
    def kind(self) -> str:
        return "public" if self.public else "hidden"


@dataclass(frozen=True)
class ExerciseSpec:
    id: str
    title: str
    defines: tuple[str, ...]
    tests: tuple[TestSpec, ...]
    depends: tuple[str, ...] = ()  # exercises whose names come from the solution, not the student
    allow: tuple[str, ...] = ()  # graded references this exercise may use anyway ("labsupport.gpt:GPT")
    forbid: tuple[str, ...] = ()  # more objects it may not use, like the references ("labsupport.bpe_train:train_bpe")

    @property
    def max_points(self) -> float:
        return sum(t.points for t in self.tests)


@dataclass(frozen=True)
class Mutant:
    name: str
    exercise: str
    replace: str
    with_: str
    count: int = -1  # occurrences to replace; -1 = all


@dataclass(frozen=True)
class LabSpec:
    lab: str  # "01"
    title: str
    notebook: Path  # the solution notebook
    profile: str
    exercises: tuple[ExerciseSpec, ...]
    limits: Limits
    path: Path  # the spec file
    setup: str = ""  # extra code run once after the notebook's imports (trusted, instructor-written)
    checks: Path | None = None  # extra module registering public checks (labsupport.checks are always loaded)
    seed: int = 0
    mutants: tuple[Mutant, ...] = ()

    @property
    def stem(self) -> str:
        return self.notebook.stem  # "01_tokenization": also the name of the lab's hidden-tests folder

    @property
    def tests(self) -> list[TestSpec]:
        return [t for ex in self.exercises for t in ex.tests]

    @property
    def max_points(self) -> float:
        return sum(ex.max_points for ex in self.exercises)

    def exercise(self, id: str) -> ExerciseSpec:
        for ex in self.exercises:
            if ex.id == id:
                return ex
        raise KeyError(f"lab {self.lab} has no exercise {id!r}; it has {', '.join(e.id for e in self.exercises)}")

    def hidden_dir(self, overlay: Path | None) -> Path | None:
        return None if overlay is None else Path(overlay) / self.stem

    def fingerprint(self, hidden: Path | None = None) -> str:
        """Changes whenever anything that decides a grade changes (spec, solution, hidden tests)."""
        h = hashlib.sha256(self.path.read_bytes() + self.notebook.read_bytes())
        for f in sorted(hidden.glob("*.py")) if hidden and hidden.is_dir() else []:
            h.update(f.name.encode() + f.read_bytes())
        return h.hexdigest()[:16]


def _err(path: Path, msg: str) -> SpecError:
    return SpecError(f"{path}: {msg}")


def _need(table: dict, key: str, typ: type | tuple, path: Path, where: str) -> Any:
    if key not in table:
        raise _err(path, f"{where} is missing `{key}`")
    if not isinstance(table[key], typ):
        raise _err(path, f"{where}: `{key}` should be {getattr(typ, '__name__', typ)}, got {table[key]!r}")
    return table[key]


def _test(raw: dict, ex: str, defines: tuple[str, ...], path: Path) -> TestSpec:
    where = f"test {raw.get('name', '?')!r} of exercise {ex}"
    name = _need(raw, "name", str, path, where)
    if ("public" in raw) == ("hidden" in raw):
        raise _err(path, f"{where}: give exactly one of `public = \"NN.k\"` or `hidden = \"file.py::func\"`")
    hidden = raw.get("hidden")
    if hidden is not None and (not isinstance(hidden, str) or "::" not in hidden):
        raise _err(path, f"{where}: `hidden` should look like \"test_lab.py::test_name\"")
    known = {"name", "public", "hidden", "points", "args", "seconds"}
    return TestSpec(
        name=name, exercise=ex, points=float(_need(raw, "points", (int, float), path, where)),
        public=raw.get("public"), hidden=hidden, args=tuple(raw.get("args", defines)),
        seconds=raw.get("seconds"), options={k: v for k, v in raw.items() if k not in known},
    )


def load_spec(path: str | os.PathLike, notebooks: str | os.PathLike | None = None) -> LabSpec:
    """Parse and validate one spec file; `notebooks` is where its solution notebook lives."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise _err(path, f"not valid TOML: {err}") from None
    lab = str(_need(raw, "lab", str, path, "the spec")).zfill(2)
    profile = raw.get("profile", "smoke")
    if profile not in GRADABLE_PROFILES:
        raise _err(path, f"profile {profile!r} is not gradable; use one of {', '.join(GRADABLE_PROFILES)} (CPU-only)")
    nb = notebooks_dir(notebooks) / _need(raw, "notebook", str, path, "the spec")
    unknown = set(raw.get("limits", {})) - set(Limits.__dataclass_fields__)
    if unknown:
        raise _err(path, f"unknown [limits] key(s) {', '.join(sorted(unknown))}")
    exercises = []
    for ex in _need(raw, "exercise", list, path, "the spec"):
        eid = str(_need(ex, "id", str, path, "an [[exercise]]"))
        if not eid.startswith(f"{lab}."):
            raise _err(path, f"exercise id {eid!r} should start with the lab number ({lab}.)")
        defines = tuple(_need(ex, "defines", list, path, f"exercise {eid}"))
        tests = tuple(_test(t, eid, defines, path) for t in _need(ex, "tests", list, path, f"exercise {eid}"))
        names = [t.name for t in tests]
        if len(set(names)) != len(names):
            raise _err(path, f"exercise {eid}: test names repeat ({', '.join(names)})")
        exercises.append(ExerciseSpec(eid, ex.get("title", eid), defines, tests, tuple(ex.get("depends", ())),
                                      tuple(ex.get("allow", ())), tuple(ex.get("forbid", ()))))
    ids = [e.id for e in exercises]
    if len(set(ids)) != len(ids):
        raise _err(path, f"exercise ids repeat: {', '.join(ids)}")
    for e in exercises:
        if set(e.depends) - set(ids) or e.id in e.depends:
            raise _err(path, f"exercise {e.id}: depends on unknown exercise(s) {', '.join(e.depends)}")
    mutants = tuple(
        Mutant(m["name"], m["exercise"], m["replace"], m["with"], int(m.get("count", -1)))
        for m in raw.get("mutant", [])
    )
    for m in mutants:
        if m.exercise not in ids:
            raise _err(path, f"mutant {m.name!r} targets unknown exercise {m.exercise!r}")
    checks = raw.get("checks")
    return LabSpec(
        lab=lab, title=raw.get("title", lab), notebook=nb, profile=profile, exercises=tuple(exercises),
        limits=Limits(**raw.get("limits", {})), path=path.resolve(), setup=raw.get("setup", ""),
        checks=(path.parent / checks).resolve() if checks else None, seed=int(raw.get("seed", 0)),
        mutants=mutants,
    )


def find_specs(specs: str | os.PathLike | None = None, notebooks: str | os.PathLike | None = None,
               labs: list[str] | None = None) -> list[LabSpec]:
    """Every spec in `specs` (default grading/specs), optionally only labs `labs` ("01", "5", ...)."""
    found = [load_spec(p, notebooks) for p in sorted(Path(specs or SPECS_DIR).glob("[0-9][0-9]_*.toml"))]
    if labs:
        wanted = {str(x).strip().zfill(2) for x in labs if str(x).strip()}
        missing = wanted - {s.lab for s in found}
        if missing:
            have = ", ".join(s.lab for s in found) or "none"
            raise SpecError(f"no grading spec for lab {', '.join(sorted(missing))} (have: {have})")
        found = [s for s in found if s.lab in wanted]
    return found


def find_spec(lab: str, specs: str | os.PathLike | None = None,
              notebooks: str | os.PathLike | None = None) -> LabSpec:
    return find_specs(specs, notebooks, [lab])[0]


def load_points_override(path: str | os.PathLike) -> dict[str, float]:
    """A TOML/JSON table {"01.2/public": 3, ...} of new points per test key."""
    path = Path(path)
    text = path.read_text()
    table = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    bad = [k for k, v in table.items() if "/" not in k or not isinstance(v, (int, float))]
    if bad:
        raise SpecError(f"{path}: keys must look like \"01.2/public\" with numeric points; bad: {', '.join(bad)}")
    return {k: float(v) for k, v in table.items()}
