"""OS-level isolation for graded code: what the grader can enforce on this machine, and the calls that
enforce it. Everything degrades to a plain subprocess where the OS lacks a feature, and `Isolation`
says so in words that end up in every result file.

Linux (namespaces): each submission gets its own user, mount, network (loopback only), PID and IPC
namespaces and a new root holding only a read-only view (`view_paths`: the system libraries, the Python
installation and site-packages, labsupport/ and grading/, the model cache) plus a private tmpfs; anything
graded code must not see that sits inside those paths is masked, and every process it started is killed
after each exercise. bwrap: the same view around the whole runner, and inside it, where namespaces nest
(bwrap not setuid), each submission's own user, PID, mount and IPC namespaces and /tmp. Elsewhere there is
no view, so `auto` refuses to grade; only an explicit `none` (or `container`, for one-submission
containers) runs without.
See grading/README.md for the full table.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from grading.spec import IMPORT_ROOT, INSTALLED, source_trees

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x10000000, 0x20000000
CLONE_NEWNET, CLONE_NEWIPC = 0x40000000, 0x08000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_REC, MS_PRIVATE = 16384, 1 << 18
KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024,
              "nodiratime": 2048, "relatime": 1 << 21}  # locked flags a remount must repeat
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 28, 38
SECURE_NOROOT_ALL = 0x2F  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS, all locked: exec cannot regain root powers
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "TORCH_NUM_THREADS")


@dataclass
class Isolation:
    mode: str  # "namespaces" | "bwrap" | "none"
    network: str
    filesystem: str
    processes: str
    memory: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option: int, arg: int) -> int:
    if not sys.platform.startswith("linux"):
        return -1
    return _libc().prctl(option, ctypes.c_ulong(arg), 0, 0, 0)


def namespaces_available() -> str | None:
    """None when unprivileged user+net+pid namespaces work here, else why not (one line)."""
    if not sys.platform.startswith("linux"):
        return f"{sys.platform} has no Linux namespaces"
    pid = os.fork()
    if pid == 0:  # try it in a throwaway child: unshare is irreversible
        os._exit(0 if _libc().unshare(NAMESPACES) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return "user namespaces are disabled (sysctl kernel.unprivileged_userns_clone / apparmor?)"


def nested_namespaces_available() -> bool:
    """Inside bwrap: can a submission get user, PID and mount namespaces of its own, with its own /proc? (No
    where bwrap is setuid, or where, run by root, it covers parts of /proc, which forbids a new proc mount.)"""
    if not sys.platform.startswith("linux"):
        return False
    pid = os.fork()
    if pid == 0:  # throwaway child: unshare is irreversible
        try:
            uid, gid = os.geteuid(), os.getegid()
            _check(_libc().unshare(NAMESPACES), "unshare")
            if uid != 0:
                Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
            Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
            inner = os.fork()
            if inner == 0:
                try:
                    _mount(None, "/", None, MS_REC | MS_PRIVATE)
                    mount_proc()
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            os._exit(os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1]))
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def choose_mode(requested: str = "auto") -> tuple[str, str]:
    """(mode, note). `requested`: auto | namespaces | bwrap | container | none (also $LABGRADE_ISOLATION).
    `auto` never falls back to running without a sandbox: it refuses. `container` (Gradescope: one container
    per submission) falls back to `none` where neither namespaces nor bwrap work."""
    requested = os.environ.get("LABGRADE_ISOLATION", requested)
    if requested not in ("auto", "namespaces", "bwrap", "container", "none"):
        raise SystemExit(f"error: unknown isolation {requested!r} (auto, namespaces, bwrap, container, none)")
    why = namespaces_available() if requested in ("auto", "namespaces", "container") else None
    if requested == "namespaces" and why:
        raise SystemExit(f"error: --isolation namespaces unavailable: {why}")
    if requested in ("auto", "namespaces", "container") and not why:
        return "namespaces", ""
    if requested in ("auto", "bwrap", "container") and shutil.which("bwrap"):
        return "bwrap", why or ""
    if requested == "bwrap":
        raise SystemExit("error: --isolation bwrap but `bwrap` is not installed (apt install bubblewrap)")
    if requested == "auto":
        raise SystemExit(f"error: cannot sandbox graded code on this machine ({why}) and bubblewrap is not "
                         "installed. Install bubblewrap (apt install bubblewrap) or enable user namespaces; or "
                         "pass --isolation none to grade WITHOUT a sandbox (every result will say so).")
    return "none", why or "isolation disabled on request"


def describe(mode: str, note: str, limits, cgroups: list[str], run_as: str = "", nested: bool = False) -> Isolation:
    """What actually holds here, with the numbers that apply (written into every result). `nested`: bwrap
    mode with a user namespace of each submission's own inside the sandbox."""
    root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    own_ns = mode == "namespaces" or (mode == "bwrap" and nested)
    if "pids" in cgroups:
        procs = (f"at most {limits.processes} per submission (cgroup pids.max, plus its 3 grading processes)")
    elif root and not run_as:
        procs = ("NOT limited (running as root: the kernel never applies RLIMIT_NPROC to root, and no pids cgroup "
                 "is writable here)")
    elif own_ns:
        # the kernel counts RLIMIT_NPROC per (user namespace, uid): the submission's grader processes count too
        procs = (f"at most {limits.processes} per submission, its own grading processes included (RLIMIT_NPROC, "
                 "counted in the submission's own user namespace)")
    elif mode == "bwrap":
        procs = (f"at most {limits.processes} for all running submissions together, NOT per submission (RLIMIT_NPROC "
                 "counted in bwrap's one user namespace: a fork bomb can make a classmate's fork() fail)")
    else:
        who = f"user {run_as!r}" if run_as else "your user"
        procs = f"at most {limits.processes} processes of {who} in total (RLIMIT_NPROC counts all of them)"
    if own_ns:
        procs += "; all killed after each exercise (PID namespace)"
    else:
        procs += "; its process group killed after each exercise (a process that leaves the group survives it)"
    if mode == "namespaces":
        net, fs = "isolated (Linux network namespace, loopback only)", (
            "a new root with a read-only view of the system libraries, Python, site-packages, labsupport/, "
            "grading/ and the model cache, plus a private tmpfs; nothing else (no repository, notebooks, "
            "overlay, submissions or results)")
    elif mode == "bwrap":
        net, fs = "isolated (bubblewrap --unshare-net)", (
            "bubblewrap root with the same read-only view, plus " + (
                "a private tmpfs /tmp per submission" if nested else
                "one tmpfs /tmp shared by this run's submissions (nested namespaces are not available here)"))
    else:
        net = f"NOT isolated ({note}): graded code can reach the network"
        fs = "NOT isolated: a private temp working directory, but graded code can read and write your files"
        if run_as:
            fs = (f"NOT isolated: a private temp working directory; graded code runs as user {run_as!r} and can "
                  "read whatever that user may read")
    procs += "; CPU shared equally between submissions (cgroup cpu)" if "cpu" in cgroups else ""
    if "memory" in cgroups:
        mem = f"at most {limits.memory_mb + CGROUP_MEMORY_SLACK_MB} MB per submission (memory cgroup)"
    elif sys.platform.startswith("linux"):
        mem = (f"+{limits.memory_mb} MB address space per process (RLIMIT_AS), NOT per submission: one that "
               f"starts more processes may use up to {limits.processes} x {limits.memory_mb} MB")
    else:
        mem = "NOT limited (macOS ignores RLIMIT_AS); wall-clock limits only"
    return Isolation(mode, net, fs, procs, mem)


SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/localtime")
CGROUP_MEMORY_SLACK_MB = 512  # interpreter pages a submission's processes copy on write, page cache


def view_paths(secrets: list[Path]) -> dict[str, list[str]]:
    """The read-only view graded code gets: {"ro": paths to bind read-only at the same place, "masks":
    secret paths inside them (hidden by empty mounts)}. Refuses when a secret holds part of the view."""
    # here, not at the top: the notebook reader subprocess imports this module and must not load torch
    import grading
    import labsupport

    env = grading_env("smoke")
    cache = Path(env["LABSUPPORT_CACHE"])
    clean = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"], env=env,
                           cwd="/", capture_output=True, text=True, check=True).stdout  # not this process's path
    python = [sys.prefix, sys.base_prefix, sys.exec_prefix, *json.loads(clean)]
    # a checkout on the path is not bound whole: only its labsupport/ and grading/ are
    repos = {*source_trees(), *([] if INSTALLED else [IMPORT_ROOT])}
    ro: list[str] = []
    for p in [*SYSTEM_DIRS, *SYSTEM_FILES, *python, Path(labsupport.__file__).parent, Path(grading.__file__).parent,
              cache]:
        p = Path(p).absolute() if str(p) else None
        if p is None or not p.exists() or p.resolve() in repos or p == Path("/") or str(p) in ro:
            continue
        if any(Path(q) in p.parents for q in ro if Path(q).is_dir() and not Path(q).is_symlink()):
            continue
        ro.append(str(p))
    masks: list[str] = []
    for s in {Path(x).resolve() for x in secrets}:
        for p in ro:
            real = Path(p).resolve()
            if real == s or s in real.parents:
                raise SystemExit(f"error: cannot build the sandbox's view: {p} (needed to run Python) lies inside "
                                 f"{s}, which graded code must not see; move one of them")
            if real in s.parents:
                masks.append(str(Path(p) / s.relative_to(real)))
    return {"ro": ro, "masks": sorted(set(masks)), "root": ""}


def bwrap_prefix(view: dict[str, list[str]], env: dict[str, str]) -> list[str]:
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
           "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    for p in view["ro"]:
        cmd += ["--ro-bind", str(Path(p).resolve()), p]
    for m in view["masks"]:
        if Path(m).is_dir():
            cmd += ["--tmpfs", m, "--remount-ro", m]
        elif Path(m).exists():
            cmd += ["--ro-bind", "/dev/null", m]
    return cmd + ["--"]


# --- per submission (namespaces mode) -------------------------------------------------------------


def unshare_namespaces() -> None:
    _check(_libc().unshare(NAMESPACES), "unshare")


def write_id_maps(pid: int) -> None:
    """Map the child's namespace root to our own uid/gid (runs in the parent, before the child mounts)."""
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        Path(f"/proc/{pid}/setgroups").write_text("deny")
    Path(f"/proc/{pid}/uid_map").write_text(f"0 {uid} 1")
    Path(f"/proc/{pid}/gid_map").write_text(f"0 {gid} 1")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _check(_libc().mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _mounts() -> list[tuple[str, int]]:
    """(mount point, locked flags) of every mount this process sees."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        flags = sum(KEPT_FLAGS.get(o, 0) for o in fields[5].split(","))
        found.append((point, flags))
    return found


def _remount_ro(prefix: str, skip: set[str]) -> None:
    """Every mount at or under `prefix` read-only, keeping the flags a user namespace may not drop."""
    for point, flags in _mounts():
        if (point == prefix or point.startswith(prefix.rstrip("/") + "/")) and point not in skip:
            try:
                _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
            except OSError:
                if point == prefix:
                    raise


def enter_view(view: dict[str, list[str]], work_mb: int) -> Path:
    """Inside the new mount namespace: build a root holding only the read-only view, a private tmpfs /tmp
    (returned: the working directory), /dev's harmless nodes and an empty /proc; chroot into it. Any
    failure raises: grading then reports it instead of running the code unsandboxed."""
    root = view["root"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do leaks back to the host
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0755")
    # The scratch /tmp first, so a view path that lives under /tmp (a checkout or venv in /tmp, as in CI) is
    # bound on top of it instead of being hidden by it.
    for d in ("/tmp", "/dev/shm", "/proc"):
        os.makedirs(root + d, exist_ok=True)
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={work_mb}m,mode=0777")
    _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0777")
    for p in view["ro"]:
        src, dst = os.path.realpath(p), root + p
        if os.path.isdir(src):
            os.makedirs(dst, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "a").close()
        _mount(src, dst, None, MS_BIND | MS_REC)
    for m in view["masks"]:
        if os.path.isdir(root + m):
            _mount("tmpfs", root + m, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0")
        elif os.path.exists(root + m):
            _mount("/dev/null", root + m, None, MS_BIND)
    for d in ("null", "zero", "full", "random", "urandom"):
        os.makedirs(root + "/dev", exist_ok=True)
        open(f"{root}/dev/{d}", "a").close()
        _mount(f"/dev/{d}", f"{root}/dev/{d}", None, MS_BIND)
    _remount_ro(root, {root + "/tmp", root + "/dev/shm"})
    os.chroot(root)
    os.chdir("/")
    return Path("/tmp")


def private_tmp(work_mb: int) -> Path:
    """Inside a new mount namespace nested in bwrap's sandbox: a /tmp (and /dev/shm) of this submission's own."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={work_mb}m,mode=0777")
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0777")
    os.chdir("/tmp")
    return Path("/tmp")


def mount_proc() -> None:
    """Inside the new PID namespace: a /proc that shows only this submission's processes."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


# --- per exercise process -----------------------------------------------------------------------


def vm_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def limit_process(limits, cpu_seconds: float) -> None:
    """Resource limits for one exercise process (inherited by anything it starts)."""
    import resource  # POSIX only, here so that importing grading on Windows reaches grade's one-line WSL2 message

    def cap(which: int, soft: int, hard: int | None = None) -> None:
        try:
            resource.setrlimit(which, (soft, soft if hard is None else hard))
        except (ValueError, OSError):
            pass

    if sys.platform.startswith("linux"):
        cap(resource.RLIMIT_AS, vm_size() + limits.memory_mb * 2**20)
    cpu = int(cpu_seconds) + 1
    cap(resource.RLIMIT_CPU, cpu, cpu + 2)  # SIGXCPU first, SIGKILL 2 s later
    cap(resource.RLIMIT_FSIZE, limits.output_mb * 2**20)
    cap(resource.RLIMIT_CORE, 0)
    if hasattr(resource, "RLIMIT_NPROC"):  # ignored for real root; per user namespace since Linux 5.14
        cap(resource.RLIMIT_NPROC, limits.processes)


def drop_privileges() -> None:
    """No capabilities (not even inside our user namespace) and no way back to them through exec."""
    if not sys.platform.startswith("linux"):
        return
    for cap in range(64):
        if prctl(PR_CAPBSET_DROP, cap) != 0:
            break
    prctl(PR_SET_SECUREBITS, SECURE_NOROOT_ALL)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()  # effective/permitted/inheritable x 2 words, all zero
    _libc().capset(ctypes.byref(Header(0x20080522, 0)), data)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def run_as(user: str) -> None:
    """Without namespaces, as root: become an unprivileged user (Gradescope containers)."""
    import pwd  # POSIX only, here so that importing grading on Windows reaches grade's one-line WSL2 message

    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)


def user_ids(user: str) -> tuple[int, int]:
    import pwd  # POSIX only, here so that importing grading on Windows reaches grade's one-line WSL2 message

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def die_with_parent() -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def make_undumpable() -> None:
    """Keep other processes of the same user out of our /proc/PID/fd and memory."""
    prctl(PR_SET_DUMPABLE, 0)


class Cgroups:
    """Per-submission cgroups where we may create them (root): `pids.max` stops fork bombs (root ignores
    RLIMIT_NPROC) and equal CPU weights keep one submission's processes from starving the others.
    Absent (and said so) elsewhere."""

    FILES = {"pids": ("pids.max", "max"), "cpu": ("cpu.shares", "1024"),
             "memory": ("memory.limit_in_bytes", "max")}  # cgroup v1
    FILES_V2 = {"pids": ("pids.max", "max"), "cpu": ("cpu.weight", "100"), "memory": ("memory.max", "max")}

    def __init__(self, tag: str, jobs: int = 1):
        self.roots: dict[str, Path] = {}
        self.v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        if not sys.platform.startswith("linux") or os.geteuid() != 0:
            return
        for ctrl in ("pids", "cpu", "memory"):
            base = Path("/sys/fs/cgroup") if self.v2 else Path("/sys/fs/cgroup") / ctrl
            root = base / f"labgrade-{tag}"
            try:
                root.mkdir(exist_ok=True)
                if self.v2:
                    (root / "cgroup.subtree_control").write_text(f"+{ctrl}")
                fname, default = (self.FILES_V2 if self.v2 else self.FILES)[ctrl]
                if ctrl == "cpu":  # the whole grading run weighs as much as `jobs` ordinary processes
                    (root / fname).write_text(str(int(default) * max(1, jobs)))
                self.roots[ctrl] = root
            except OSError:
                self.remove([root])

    @property
    def active(self) -> set[str]:
        return set(self.roots)

    def add(self, name: str, pid: int, nproc: int, memory_mb: int = 0) -> list[Path]:
        groups = []
        for ctrl, root in self.roots.items():
            group = root / name
            try:
                group.mkdir(exist_ok=True)
                if ctrl == "pids":
                    (group / "pids.max").write_text(str(nproc))
                if ctrl == "memory" and memory_mb:
                    fname = self.FILES_V2["memory"][0] if self.v2 else self.FILES["memory"][0]
                    (group / fname).write_text(str((memory_mb + CGROUP_MEMORY_SLACK_MB) * 2**20))
                (group / "cgroup.procs").write_text(str(pid))
                groups.append(group)
            except OSError:
                continue
        return groups

    @staticmethod
    def remove(groups: list[Path]) -> None:
        for group in groups:
            for _ in range(50):  # a killed process may take a moment to leave
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)

    def close(self) -> None:
        for root in self.roots.values():
            self.remove([p for p in root.iterdir() if p.is_dir()] if root.exists() else [])
        self.remove(list(self.roots.values()))


ALLOWED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LABGRADE_TEST_TAG")


def grading_env(profile: str) -> dict[str, str]:
    """The whole environment of every grading process, built from an allowlist (never the instructor's
    environment: no tokens, no paths to the overlay or results): CPU only, one thread, offline, the spec's
    profile, the model cache, and (unless grading is installed) its folder on PYTHONPATH so `grading` imports."""
    env = {k: os.environ[k] for k in ALLOWED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({v: "1" for v in THREAD_VARS})
    env.update(CUDA_VISIBLE_DEVICES="", LABSUPPORT_PROFILE=profile, MPLBACKEND="Agg", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", TQDM_DISABLE="1",
               LABSUPPORT_CACHE=str(Path(os.environ.get("LABSUPPORT_CACHE") or Path.home() / ".cache" / "labsupport")))
    if not INSTALLED:
        env["PYTHONPATH"] = str(IMPORT_ROOT)
    return env
