"""The binaries shared by the forward and backward MIP passes: one per ambiguous activation (ReLU /
LeakyReLU) and one selector per possible max-pool winner (at most one winner per window)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.bounds.interval import maxpool_can_win
from lipopt.bounds.types import ForwardBounds
from lipopt.formulations.forms import constraint_list, new_vars, stage_block
from lipopt.network.stages import MaxPoolStage, is_activation


@dataclass
class Switches:
    """Binaries shared by the forward and backward passes.

    relu[s][i]: the binary of ambiguous neuron i of activation (ReLU / LeakyReLU) stage s (absent for
    stable neurons).
    masks[s]: (active, inactive, ambiguous) of activation stage s.
    pool[s][j]: list of (flat input index, selector var or None) for the possible winners of window j of
    max-pool stage s; a single possible winner has selector None (it always wins)."""

    relu: dict[int, dict[int, Any]] = field(default_factory=dict)
    masks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    pool: dict[int, list[list[tuple[int, Any]]]] = field(default_factory=dict)

    @property
    def n_relu_binaries(self) -> int:
        return sum(len(d) for d in self.relu.values())

    @property
    def n_pool_binaries(self) -> int:
        return sum(sum(1 for lst in w for _, d in lst if d is not None) for w in self.pool.values())

    def all_binaries(self) -> list[Any]:
        out = [v for d in self.relu.values() for v in d.values()]
        out += [d for w in self.pool.values() for lst in w for _, d in lst if d is not None]
        return out


def make_switches(model: Any, fb: ForwardBounds, *, relax: bool = False, prefix: str = "") -> Switches:
    """Create the activation binaries and max-pool selectors (continuous in [0, 1] when ``relax``)."""
    sw = Switches()
    for s, stage in enumerate(fb.stages):
        if is_activation(stage):
            act, inact, amb = fb.relu_masks(s)
            sw.masks[s] = (act, inact, amb)
            idx = np.nonzero(amb)[0]
            if idx.size:
                var = new_vars(stage_block(model, s, prefix), "a", idx.size, 0.0, 1.0, binary=not relax,
                               index=idx.tolist())
                sw.relu[s] = {i: var[i] for i in idx.tolist()}
            else:
                sw.relu[s] = {}
        elif isinstance(stage, MaxPoolStage):
            sw.pool[s] = _pool_selectors(model, fb, s, stage, relax, prefix)
    return sw




def _pool_selectors(model: Any, fb: ForwardBounds, s: int, stage: MaxPoolStage, relax: bool, prefix: str
                    ) -> list[list[tuple[int, Any]]]:
    """Per window j of max-pool stage s: (input, selector d[j, input]) for each possible winner (one
    winner: selector None) and the row sum_i d[j, i] = 1."""
    lo, hi = fb.pre_activation(s)
    can = maxpool_can_win(stage, lo, hi)
    members = [[int(stage.windows[j, q]) for q in np.nonzero(can[j])[0]] for j in range(stage.out_size)]
    keys = [(j, i) for j, mem in enumerate(members) if len(mem) > 1 for i in mem]
    if not keys:
        return [[(mem[0], None)] for mem in members]
    blk = stage_block(model, s, prefix)
    var = new_vars(blk, "d", len(keys), 0.0, 1.0, binary=not relax, index=keys)
    cons = constraint_list(blk, "d_one")
    windows: list[list[tuple[int, Any]]] = []
    for j, mem in enumerate(members):
        if len(mem) == 1:
            windows.append([(mem[0], None)])
            continue
        lst = [(i, var[j, i]) for i in mem]
        cons.add(sum(d for _, d in lst) == 1, j)
        windows.append(lst)
    return windows
