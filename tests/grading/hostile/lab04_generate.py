"""Exercise 04.4 (the generation loop) answered by the course's own decoding loop, spelled every way a student
who read labsupport might: through the notebook's own `decoding` alias, a re-export in another module, a
dynamic import, the model's method, the check module, or digging the function out of memory. Each must score
0 with "uses the course's reference implementation" (tests/grading/test_reference_attacks.py)."""

SIGNATURE = ("def generate(model, ids, max_new_tokens, temperature=1.0, top_k=None, greedy=False, eos_id=None,\n"
             "             generator=None):\n")
WRAP = (  # the graded reference's own three lines, on whatever `lib` names
    "    seed = None if generator is None else generator.initial_seed()\n"
    "    out, d = lib(model, ids, max_new_tokens, temperature=0 if greedy else temperature, top_k=top_k, seed=seed,\n"
    "                 eos_id=eos_id, return_details=True)\n"
    "    return out, d.token_probs\n")

ATTACKS = {
    "notebook_alias": SIGNATURE + "    lib = decoding.generate\n" + WRAP,
    "reexport_lmtrain": "from labsupport.lmtrain import generate as lib_generate\n\n" + SIGNATURE
                        + "    lib = lib_generate\n" + WRAP,
    "reexport_lstm_module": "import labsupport.lstm as L\n\n" + SIGNATURE + "    lib = L.generate\n" + WRAP,
    "dynamic_import": "import importlib\n\n" + SIGNATURE
                      + "    lib = getattr(importlib.import_module('labsupport.' + 'gen' + 'erate'), 'gen' + 'erate')\n"
                      + WRAP,
    "check_module": "import sys\n\n" + SIGNATURE
                    + "    ref = getattr(sys.modules['labsupport.' + 'checks.lab04'], 'reference_' + 'generate')\n"
                    + "    return ref(model, ids, max_new_tokens, temperature, top_k, greedy, eos_id, generator)\n",
    "model_method": SIGNATURE
                    + "    out = type(model).generate(model, ids, max_new_tokens, temperature=temperature or 1.0,\n"
                      "                               do_sample=not greedy, top_k=top_k, generator=generator)\n"
                    "    return out, torch.ones(out.size(0), out.size(1) - ids.size(1))\n",
    "from_memory": "import gc, sys, types\n\n" + SIGNATURE  # falls back to the module: its tripwire names it
                   + "    lib = next((o for o in gc.get_objects() if isinstance(o, types.FunctionType)\n"
                     "                and o.__module__ == 'labsupport.generate'\n"
                     "                and o.__code__.co_name == 'generate'), None)\n"
                     "    lib = lib or getattr(sys.modules['labsupport.' + 'generate'], 'generate')\n"
                   + WRAP,
}
