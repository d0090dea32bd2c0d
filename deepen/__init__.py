"""deepen: DeePEn (arXiv 2404.12715) — ensembles of LLMs with different vocabularies, fused token by token.

Read in the order of the method: members -> vocabulary -> anchors -> relative -> fuse -> sync -> ensemble.
"""

from deepen.anchors import Anchors, find_anchors
from deepen.ensemble import Ensemble, Generation
from deepen.errors import DeepenError
from deepen.fuse import FusionConfig
from deepen.members import Member, load_member
from deepen.relative import RelativeSpace
from deepen.vocabulary import Vocabulary, normalise_vocabulary

__all__ = [
    "Anchors", "DeepenError", "Ensemble", "FusionConfig", "Generation", "Member", "RelativeSpace", "Vocabulary",
    "find_anchors", "load_member", "normalise_vocabulary",
]
__version__ = "0.1.0"
