"""Every mode a run can have, by name: ``competition`` (:mod:`.modes`, which also
holds the judges: the checks, and the judge agent of :mod:`.judge`), ``ensemble``
(:mod:`.ensemble`) and ``debate`` (:mod:`.debate`). The modes beyond competition
are built of its phases, so they live above :mod:`.modes`, and this table above them."""

from __future__ import annotations

from typing import Final

from mimird.runs import debate, ensemble, modes

MODES: Final[dict[str, modes.Mode]] = {
    **modes.MODES,
    "ensemble": ensemble.ensemble,
    "debate": debate.debate,
}
