"""Decoding methods: how the members' next-token distributions become the ensemble's next piece of text.

Each method is one module with one class, constructed as ``Class(members, sync=..., progress=..., **options)`` and
driven by the decoding loop (``deepen.decoding``) through three things:

    step(batch, allowed) -> StepOutput   the next piece(s) of every active row (and the multiple-choice pick)
    eager_members                        members to bring up to date after every step ([] = on demand only)
    main_rolls_back                      whether the main model's tokens can be taken back (its cache must allow it)

plus ``clock`` (seconds spent in the method's own arithmetic, cumulative). A step says for each row whether it
ensembled (the members' distributions decided it) or not (a gate, a skip rule, an accepted draft): the share of
ensembled steps is reported next to accuracy and latency. Adding a method is one module and one entry in ``REGISTRY``; the library
(``Ensemble(members, method=...)``), the command line (``--method``) and the pipeline (an ensemble's ``methods``)
find it there. ``safe+<base>`` runs the SAFE policy (``deepen.methods.safe``) on top of any other method.

The registry names modules rather than importing them, so that light code (config checks) can list the methods
without importing torch.
"""

from __future__ import annotations

from importlib import import_module

from deepen.errors import DeepenError

#: method name -> (module, class)
REGISTRY: dict[str, tuple[str, str]] = {
    "deepen": ("deepen.methods.deepen", "DeePEn"),
    "gac": ("deepen.methods.gac", "GaC"),
    "unite": ("deepen.methods.unite", "UniTE"),
}
#: "safe+<base>": a policy that runs on top of a base method (module, class)
COMPOSERS: dict[str, tuple[str, str]] = {"safe": ("deepen.methods.safe", "SAFE")}


def parse(name: str) -> tuple[str | None, str]:
    """(composer or None, base method) of a method name; a DeepenError naming the known ones if it is unknown."""
    composer, _, base = name.rpartition("+")
    if base not in REGISTRY or (composer and composer not in COMPOSERS):
        known = ", ".join([*REGISTRY, *(f"{c}+<method>" for c in COMPOSERS)])
        raise DeepenError(f"unknown method {name!r}; known methods: {known}")
    return composer or None, base


def method_class(name: str):
    module, cls = REGISTRY.get(name) or COMPOSERS[name]
    return getattr(import_module(module), cls)


def build_method(name: str, members, **options):
    """The method called ``name`` over ``members`` (main model first), with its options."""
    composer, base = parse(name)
    if composer is None:
        return method_class(base)(members, **options)
    return method_class(composer)(members, base=base, **options)
