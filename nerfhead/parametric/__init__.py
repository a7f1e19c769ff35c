"""ICT-FaceKit parametric head (identity + 53 expressions + pose -> vertices, landmarks) and the rigged real-scan
head built from it (ICT fitted to the LeePerrySmith scan, with the scan's skin colour).

>>> from nerfhead.parametric import ICTHead, load_rigged_head
"""

from nerfhead.parametric.ict import (
    CANONICAL_ORIGIN_CM,
    ICT_PARTS,
    PART_ID,
    ICTHead,
    ICTOutput,
    triangulate_quads,
)
from nerfhead.parametric.rigged import RiggedHead, load_rigged_head

__all__ = [
    "CANONICAL_ORIGIN_CM",
    "ICT_PARTS",
    "PART_ID",
    "ICTHead",
    "ICTOutput",
    "RiggedHead",
    "load_rigged_head",
    "triangulate_quads",
]
