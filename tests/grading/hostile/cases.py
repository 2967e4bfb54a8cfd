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
}

# (score out of 9, {test key: substring its message must contain}) per case; every other test passes.
EXPECTED = {
    "infinite_loop": (6, {"99.1/public": "s of CPU time", "99.1/large_logits": "s of CPU time"}),
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
}
