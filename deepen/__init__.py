"""deepen: DeePEn (arXiv 2404.12715) — ensembles of LLMs with different vocabularies, fused token by token.

Read in the order of the method: members -> vocabulary -> anchors -> relative -> search -> fuse -> sync -> decoding ->
methods -> ensemble (docs/architecture.md has the whole map). Names below are imported lazily, so light users (the
pipeline's bookkeeping jobs) do not pay for torch.
"""

from importlib import import_module

_EXPORTS = {
    "Anchors": "deepen.anchors", "find_anchors": "deepen.anchors",
    "Ensemble": "deepen.ensemble", "Generation": "deepen.decoding",
    "DeepenError": "deepen.errors",
    "FusionConfig": "deepen.fuse",
    "Member": "deepen.members", "load_member": "deepen.members",
    "RelativeSpace": "deepen.relative",
    "Vocabulary": "deepen.vocabulary", "normalise_vocabulary": "deepen.vocabulary",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deepen' has no attribute {name!r}")
