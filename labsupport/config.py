"""A tiny attribute-access config node (minGPT's `CfgNode`), used by `GPT` and `Trainer`.

    C = CfgNode(n_layer=3, n_head=3)
    C.n_embd = 48                     # attribute access
    C.merge_from_dict({"n_head": 4})  # bulk update, e.g. from a dict of overrides
    print(C)                          # one `key: value` line per entry, nested nodes indented
"""

from __future__ import annotations

from typing import Any


class CfgNode:
    """A bag of named settings; values may themselves be `CfgNode`s."""

    def __init__(self, **kwargs: Any):
        self.__dict__.update(kwargs)

    def __str__(self) -> str:
        return self._str_helper(0)

    def _str_helper(self, indent: int) -> str:
        lines = []
        for k, v in self.__dict__.items():
            if isinstance(v, CfgNode):
                lines.append(f"{k}:\n{v._str_helper(indent + 1)}")
            else:
                lines.append(f"{k}: {_short(v)}\n")
        return "".join("    " * indent + line for line in lines)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={_short(v)}" for k, v in self.__dict__.items())
        return f"CfgNode({items})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CfgNode) and self.to_dict() == other.to_dict()

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def to_dict(self) -> dict[str, Any]:
        """A plain (nested) dict of the settings."""
        return {k: v.to_dict() if isinstance(v, CfgNode) else v for k, v in self.__dict__.items()}

    def merge_from_dict(self, d: dict[str, Any]) -> CfgNode:
        """Update settings from a dict (nested dicts update nested nodes); returns self for chaining."""
        if not isinstance(d, dict):
            raise TypeError(f"merge_from_dict expects a dict, got {type(d).__name__}")
        for k, v in d.items():
            current = self.__dict__.get(k)
            if isinstance(current, CfgNode) and isinstance(v, dict):
                current.merge_from_dict(v)
            else:
                self.__dict__[k] = v
        return self


def _short(v: Any) -> str:
    """Classes print as their name rather than `<class 'pkg.mod.Name'>`."""
    return v.__name__ if isinstance(v, type) else repr(v)
