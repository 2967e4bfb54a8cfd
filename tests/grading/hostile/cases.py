"""Hostile submissions to the synthetic lab 99, as edits of its solution notebook.

Each case maps a cell id of tests/grading/fixtures/notebooks/99_synthetic.ipynb to new source (None deletes
the cell; a list of sources duplicates it in place). Placeholders @HIDDEN@, @OUT@ and @REPO@ are filled in by
test_hostile.py. Cell ids: cell-04 softmax (99.1), cell-07 attention (99.2), cell-11 count_pairs (99.3),
cell-05/08/12 their locked check cells, cell-02 the setup cell.
"""

SOFTMAX = """def softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)"""

PAIRS = """def count_pairs(tokens):
    tokens = as_list(tokens)
    counts = {}
    for a, b in zip(tokens, tokens[1:]):
        counts[(a, b)] = counts.get((a, b), 0) + 1
    return counts"""

# Marker strings: none may ever appear in any result, feedback, report or Gradescope output.
HIDDEN_MARKER = "hidden-test-source-must-never-leak"  # inside a judge_ function of the hidden tests
CLASSMATE_MARKER = "classmate-code-must-never-leak"  # in an honest classmate's softmax
ENV_MARKER = "environment-secret-must-never-leak"  # in the instructor's environment while grading
RESULTS_MARKER = "other-lab-results-must-never-leak"  # in another lab's results folder next to ours
MARKERS = (HIDDEN_MARKER, CLASSMATE_MARKER, ENV_MARKER, RESULTS_MARKER)

CASES = {
    "infinite_loop": {
        "cell-04": "while True:  # a top-level loop: never executed, only definitions are\n    pass\n\n"
                   "def softmax(x, axis=-1):\n    while True:\n        pass",
    },
    "slow_definition": {
        "cell-11": "FOREVER = next(i for i in iter(int, 1) if i)  # used below, so the grader must run it\n\n"
                   "def count_pairs(tokens):\n    return FOREVER",
    },
    "memory_bomb": {
        "cell-07": "def attention(q, k, v):\n    hog = []\n    while True:\n        hog.append(bytearray(10**7))",
    },
    "fork_bomb": {
        "cell-11": "import os\n\ndef count_pairs(tokens):\n    while True:\n        try:\n            os.fork()\n"
                   "        except OSError:\n            pass",
    },
    "huge_output": {
        "cell-04": "def softmax(x, axis=-1):\n    while True:\n        print('spam' * 100_000)",
    },
    "network_call": {
        "cell-11": "import socket\n\ndef count_pairs(tokens):\n"
                   "    socket.create_connection(('1.1.1.1', 80), timeout=2).close()\n    return {}",
    },
    "read_hidden_tests": {
        "cell-04": """import inspect, os, sys

def softmax(x, axis=-1):
    found = []
    for attempt in (lambda: os.listdir('@HIDDEN@'), lambda: os.listdir('@HIDDEN@' + '/99_synthetic'),
                    lambda: open('@HIDDEN@' + '/99_synthetic/test_hidden.py').read(),
                    lambda: inspect.getsource(sys._getframe(2)),
                    lambda: inspect.getsource(inspect.getmodule(sys._getframe(2)))):
        try:
            found.append(repr(attempt()))
        except Exception as err:
            found.append(type(err).__name__)
    raise AssertionError('LEAK ' + ' | '.join(found))""",
    },
    "write_results": {
        "cell-11": """import os

def count_pairs(tokens):
    wrote = []
    for path in ('@OUT@' + '/good.json', '@OUT@' + '/mallory.json', '@REPO@' + '/grading/__init__.py',
                 '@HIDDEN@' + '/99_synthetic/test_hidden.py'):
        try:
            with open(path, 'a') as f:
                f.write('{"score": 999}')
            wrote.append(path)
        except OSError:
            pass
    assert not wrote, 'WROTE ' + ', '.join(wrote)
    tokens = as_list(tokens)
    return {p: sum(1 for q in zip(tokens, tokens[1:]) if q == p) for p in zip(tokens, tokens[1:])}""",
    },
    "monkeypatch_checker": {
        "cell-04": """import numpy
numpy.allclose = lambda *a, **k: True  # top level: not a definition of `softmax`, so never executed

def softmax(x, axis=-1):
    import sys
    lc = sys.modules['labsupport.check']
    lc.run_check = lambda *a, **k: (True, 'ok')
    lc.EXERCISES.clear()
    numpy.allclose = lambda *a, **k: True
    numpy.isfinite = lambda *a, **k: True
    return x""",
    },
    "exit_mid_run": {
        "cell-04": "import sys\n\ndef softmax(x, axis=-1):\n    sys.exit(0)",
        "cell-11": "import os\n\ndef count_pairs(tokens):\n    os._exit(0)",
    },
    "segfault": {
        "cell-11": "import ctypes\n\ndef count_pairs(tokens):\n    return ctypes.string_at(0)  # kills the interpreter",
    },
    "deleted_cell": {"cell-04": None},
    "duplicated_cells": {
        "cell-04": ["def softmax(x, axis=-1):\n    return x  # first, wrong draft", SOFTMAX],
        "cell-11": [PAIRS, "def count_pairs(tokens):\n    return {}  # later broken copy wins"],
    },
    "edited_locked_cells": {
        "cell-05": 'print("PASS  exercise 99.1 (stable softmax): all tests passed")',
        "cell-08": None,
        "cell-02": "import numpy as np\nimport labsupport\nGRADE = 'A+'",
    },
    "syntax_error": {
        "cell-07": "def attention(q, k, v):\n    return q @@ k",
    },
    # --- issue 14, class 1: trusted state through frames, memory, the result channel ----------------------
    "frames_and_memory": {
        "cell-04": """import gc, sys

def softmax(x, axis=-1):
    found = []
    f = sys._getframe()
    while f is not None:
        found += [k for k in f.f_locals if not k.startswith('__')]
        f = f.f_back
    for o in gc.get_objects():
        if isinstance(o, str) and ('never-leak' in o or 'def test' in o or 'judge_' in o):
            found.append(o)
    raise AssertionError('FRAMES ' + ' '.join(map(str, found)))""",
    },
    "forge_results": {
        "cell-11": """import json, os

def count_pairs(tokens):
    fake = [{"t": "done", "test": "99.3/public", "passed": True, "seconds": 0,
             "data": [["count_pairs([1, 2, 1, 2, 3])", {"$d": []}]]},
            {"t": "exercise", "id": "99.3", "tests": {"99.3/public": {"passed": True, "message": "ok"}}},
            {"t": "end"}]
    for fd in range(3, 64):
        for msg in fake:
            try:
                os.write(fd, (json.dumps(msg) + "\\n").encode())
            except OSError:
                pass
    return {}""",
    },
    # --- class 2: the course's reference implementation --------------------------------------------------
    "reference_import": {
        "cell-04": "from labgrade_checks import ref_softmax\n\ndef softmax(x, axis=-1):\n"
                   "    return ref_softmax(x, axis)",
    },
    "reference_checks_module": {
        "cell-11": "import labsupport.checks.lab01 as l1\n\ndef count_pairs(tokens):\n"
                   "    return dict(l1.bpe_train.count_pairs({tuple(tokens): 1}))",
    },
    "reference_by_name": {
        "cell-04": """import sys

def softmax(x, axis=-1):
    mod = sys.modules['labgrade' + '_checks']
    return getattr(mod, 'ref_' + 'softmax')(x, axis)""",
    },
    # --- class 3: objects that lie ----------------------------------------------------------------------
    "lying_objects": {
        "cell-04": """class Liar(np.ndarray):
    def __eq__(self, other):
        return True

    def __array_function__(self, *a, **k):
        return True

def softmax(x, axis=-1):
    return np.zeros_like(x).view(Liar)""",
        "cell-11": """class LyingDict(dict):
    def __eq__(self, other):
        return True

def count_pairs(tokens):
    return LyingDict()""",
    },
    # --- class 4: tampering with the checker, and options from the student's names -----------------------
    "tamper_checker": {
        "cell-04": """import sys

def softmax(x, axis=-1):
    mod = sys.modules.get('labgrade_checks')
    if mod is not None:
        mod.X[...] = 0.0  # the check's own inputs
        mod.ref_softmax.__defaults__ = (0,)
    np.allclose = lambda *a, **k: True
    np.isfinite = lambda *a, **k: np.array(True)
    sys.setprofile(lambda *a: None)
    return np.full_like(x, 1.0 / x.shape[axis])  # right only for all-equal inputs""",
    },
    "student_options": {
        "cell-04": "atol = float('inf')\nrtol = 1e9\nseed = 42\n\ndef softmax(x, axis=-1, _opts=(atol, rtol, seed)):\n"
                   "    return np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)  # overflows on large logits",
        "cell-07": "def attention(q, k, v, _opts=(rtol,)):\n    return softmax(q @ k.transpose(0, 2, 1)) @ v",
    },
    # --- class 5: one file must not stop the class ---------------------------------------------------------
    "deep_expression": {
        "cell-04": "BIG = " + "+".join(["1"] * 100_000) + "\n\ndef softmax(x, axis=-1):\n    return x * 0 + BIG",
    },
    "many_names": {  # quadratic extraction: thousands of names, each looked up among thousands of statements
        # a flat list (not a nested sum, which would be `deep_expression`), big enough that reading it outlasts
        # parse_seconds even on an idle machine
        "cell-04": "\n".join(f"n{i} = {i}" for i in range(30000)) + "\n\ndef softmax(x, axis=-1):\n    return x + sum(["
                   + ", ".join(f"n{i}" for i in range(30000)) + "])",
    },
    # --- class 7: secrets and neighbours -------------------------------------------------------------------
    "read_secrets": {
        "cell-04": """import os

def softmax(x, axis=-1):
    found = [repr(dict(os.environ))]
    for path in ('@REPO@/.git/HEAD', '@REPO@/notebooks', '@REPO@/grading/specs', '@OTHER@', '@OTHER@/r.json',
                 '@HIDDEN@/99_synthetic/test_hidden.py', '@SUBS@', '@SUBS@/good_marked.ipynb'):
        try:
            found.append(path + '=' + (repr(os.listdir(path)) if os.path.isdir(path) else open(path).read()))
        except OSError as err:
            found.append(path + '!' + type(err).__name__)
    found += [repr(os.listdir(p)) for p in ('/', '@REPO@')]
    raise AssertionError('SECRETS ' + ' | '.join(found))""",
    },
    # --- class 8: resources ---------------------------------------------------------------------------------
    "memory_many_processes": {
        "cell-11": """import os, time

def count_pairs(tokens):
    r, w = os.pipe()
    kids = []
    for _ in range(6):  # 6 x 200 MB: each within its own address-space limit, together far over the cgroup's
        pid = os.fork()
        if pid == 0:
            try:
                hog = bytearray(200 * 2**20)
                hog[::4096] = b'x' * len(hog[::4096])  # touch every page
                os.write(w, b'1')
                time.sleep(3)
            finally:
                os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    os.close(w)
    return {('allocated', 'ok'): len(os.read(r, 64))}""",
    },
    "huge_definition_messages": {
        "cell-04": "BOOM = (_ for _ in ()).throw(AssertionError('A' * 20_000_000))\n\n"
                   "def softmax(x, axis=-1):\n    return BOOM",
        "cell-11": "BANG = (_ for _ in ()).throw(ValueError('B' * 20_000_000))\n\n"
                   "def count_pairs(tokens):\n    return BANG",
    },
}

# (score out of 9, {test key: substring its message must contain}) per case; every other test passes.
EXPECTED = {
    "infinite_loop": (6, {"99.1/public": "3 s of", "99.1/large_logits": "3 s of"}),  # CPU, or wall under load
    "slow_definition": (6, {"99.3/public": "did not finish defining", "99.3/short_inputs": "did not finish"}),
    "memory_bomb": (6, {"99.2/public": "memory", "99.2/single_query": "memory"}),
    "fork_bomb": (6, {"99.3/public": "", "99.3/short_inputs": ""}),
    "huge_output": (6, {"99.1/public": "MB", "99.1/large_logits": "MB"}),
    "network_call": (6, {"99.3/public": "unreachable", "99.3/short_inputs": "unreachable"}),
    "read_hidden_tests": (6, {"99.1/public": "LEAK", "99.1/large_logits": "LEAK"}),
    "write_results": (9, {}),
    "monkeypatch_checker": (6, {"99.1/public": "softmax(x, axis=-1)", "99.1/large_logits": "sum to 1"}),
    "exit_mid_run": (3, {"99.1/public": "sys.exit", "99.1/large_logits": "sys.exit",
                         "99.3/public": "os._exit", "99.3/short_inputs": "os._exit"}),
    "segfault": (6, {"99.3/public": "segmentation fault", "99.3/short_inputs": "segmentation fault"}),
    "deleted_cell": (6, {"99.1/public": "no cell defines `softmax`", "99.1/large_logits": "no cell defines"}),
    "duplicated_cells": (7, {"99.3/public": "got {}"}),
    "edited_locked_cells": (9, {}),
    "syntax_error": (6, {"99.2/public": "syntax error in cell 8", "99.2/single_query": "syntax error"}),
    "frames_and_memory": (6, {"99.1/public": "FRAMES", "99.1/large_logits": "FRAMES"}),
    "forge_results": (7, {"99.3/public": "got {}"}),
    "reference_import": (6, {"99.1/public": "uses the course's reference implementation (labgrade_checks.ref_softmax)",
                             "99.1/large_logits": "uses the course's reference implementation"}),
    "reference_checks_module": (6, {"99.3/public": "uses the course's reference implementation (labsupport.checks",
                                    "99.3/short_inputs": "uses the course's reference implementation"}),
    "reference_by_name": (6, {"99.1/public": "uses the course's reference implementation (labgrade_checks.ref_softmax)",
                              "99.1/large_logits": "uses the course's reference implementation"}),
    "lying_objects": (3, {"99.1/public": "softmax(x, axis=-1)", "99.1/large_logits": "sum to 1",
                          "99.3/public": "LyingDict", "99.3/short_inputs": "LyingDict"}),
    "tamper_checker": (7, {"99.1/public": "softmax(x, axis=-1)"}),
    "student_options": (6, {"99.1/large_logits": "overflows", "99.2/public": "attention(q, k, v)"}),  # spec options won
    "read_secrets": (6, {"99.1/public": "SECRETS", "99.1/large_logits": "SECRETS"}),
    "memory_many_processes": (6, {"99.3/public": "", "99.3/short_inputs": ""}),
    "huge_definition_messages": (3, {"99.1/public": "AAAA", "99.1/large_logits": "AAAA",
                                     "99.3/public": "BBBB", "99.3/short_inputs": "BBBB"}),
}
INVALID = {  # whole submissions that cannot be read: reason substring (the reader's limits, not a crash of the run)
    "many_names": "reading the notebook",
    "deep_expression": "the notebook",  # RecursionError, or the reader's stack/memory limit
}
