"""The stable train/val/test split of a study id (R2Gen-style 7:1:2).

Each study goes by ``sha256(f"{seed}:{id}")`` read as a fraction in [0, 1): < 0.7
train, < 0.8 val, else test -- stable across runs and machines, independent of
file order.  ``kgrag fetch iu-xray`` and the Open-i reader both use it.
"""

from __future__ import annotations

import hashlib


def split_for(study_id: str, seed: int = 42) -> str:
    u = int(hashlib.sha256(f"{seed}:{study_id}".encode()).hexdigest()[:12], 16) / float(1 << 48)
    return "train" if u < 0.7 else "val" if u < 0.8 else "test"
