"""The order of a member's input embedding rows, and moving an ensemble's anchors to the front in place.

A relative space reads the anchors' embeddings many times per step. When the anchors are a small part of a member's
vocabulary (Gemma-3: 46k of 262k), keeping a copy of their embeddings costs memory (118 MB); instead
``put_anchors_first`` moves their rows to the front of the member's own matrix, and the model keeps computing exactly
what it did (hooks translate token ids to rows, and the checkpoint's order is what is saved and loaded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VocabularyOrder:
    """Where each token's row is in a member's input embedding matrix.

    ``row_of[t]`` is token t's row; None means row t (the checkpoint's order). After ``put_anchors_first`` the first
    ``len(front)`` rows hold the tokens ``front`` (an ensemble's anchors, in order), so that a relative space reads the
    anchors' embeddings in place instead of keeping a copy (118 MB for Gemma-3 against 46k anchors). ``in_use`` is set
    once a relative space relies on this order, which then never changes again."""

    row_of: torch.Tensor | None = None
    front: torch.Tensor | None = None
    in_use: bool = False


def vocabulary_order(model) -> VocabularyOrder:
    """The order of ``model``'s input embedding rows (kept on the model, shared by everything that reads them)."""
    order = getattr(model, "_deepen_vocabulary_order", None)
    if order is None:
        order = VocabularyOrder()
        model._deepen_vocabulary_order = order
    return order


def _reorderable(model, anchors: torch.Tensor) -> bool:
    """Whether ``model`` is a decoder whose fp32 embedding matrix is held by its embedding layer (and a tied output
    layer) alone, on one device, and ``anchors`` are distinct rows of it."""
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    weight = getattr(emb, "weight", None)
    if (not isinstance(emb, torch.nn.Embedding) or weight.dtype != torch.float32 or weight.device.type == "meta"
            or getattr(model.config, "is_encoder_decoder", False) or getattr(model, "hf_device_map", None)):
        return False
    tied = out is not None and getattr(out, "weight", None) is weight
    if tied and not isinstance(out, torch.nn.Linear):
        return False
    holders = [m for m in model.modules() if any(p is weight for p in m.parameters(recurse=False))]
    n_rows, n_anchors = weight.shape[0], len(anchors)
    return (len(holders) == 1 + tied and n_anchors > 0 and int(anchors.min()) >= 0 and int(anchors.max()) < n_rows
            and len(anchors.unique()) == n_anchors)


def put_anchors_first(model, anchor_ids) -> bool:
    """Move the anchors' rows of ``model``'s input embedding matrix to its front, in the anchors' order, in place.

    The model computes exactly what it did (``_keep_token_order``). Returns whether the anchors are first now: False
    when the rows are already in use in another order, or the model is not one ``_reorderable`` handles."""
    order = vocabulary_order(model)
    anchors = torch.as_tensor(anchor_ids).detach().to("cpu", torch.long).reshape(-1)
    if order.front is not None:
        return torch.equal(order.front, anchors)
    if order.in_use or not _reorderable(model, anchors):
        return False
    weight = model.get_input_embeddings().weight
    n_rows, n_anchors = weight.shape[0], len(anchors)
    # source[r]: the token stored in row r. The anchors go to rows 0..|A|-1; the other tokens that were there move
    # to the rows the anchors left; every other row stays.
    source = torch.arange(n_rows)
    is_anchor = torch.zeros(n_rows, dtype=torch.bool)
    is_anchor[anchors] = True
    source[anchors[anchors >= n_anchors].sort().values] = (~is_anchor[:n_anchors]).nonzero().squeeze(-1)
    source[:n_anchors] = anchors
    moved = (source != torch.arange(n_rows)).nonzero().squeeze(-1)
    with torch.no_grad():
        weight[moved.to(weight.device)] = weight[source[moved].to(weight.device)]  # the right side is gathered first
    row_of = torch.empty_like(source)
    row_of[source] = torch.arange(n_rows)
    order.row_of, order.front = row_of, anchors.clone()
    _keep_token_order(model, row_of.to(weight.device), source.to(weight.device))
    return True


def _keep_token_order(model, rows: torch.Tensor, source: torch.Tensor) -> None:
    """Hooks that keep a reordered model exact: input ids are mapped to their rows before the embedding lookup, a tied
    output layer's logits are put back in token order, and ``state_dict`` / ``load_state_dict`` (hence
    ``save_pretrained``) read and write the checkpoint's order. ``rows[t]``: token t's row; ``source[r]``: row r's
    token."""
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    weight = emb.weight

    def ids_to_rows(module, args, kwargs):
        if args:
            return (rows[args[0]], *args[1:]), kwargs
        return args, {**kwargs, "input": rows[kwargs["input"]]}

    emb.register_forward_pre_hook(ids_to_rows, with_kwargs=True)
    if out is not None and getattr(out, "weight", None) is weight:
        out.register_forward_hook(lambda module, args, logits: logits.index_select(-1, rows))
    names = [name for name, p in model.named_parameters(remove_duplicate=False) if p is weight]

    def checkpoint_order(module, state_dict, prefix, local_metadata):
        for name in names:
            if prefix + name in state_dict:
                state_dict[prefix + name] = state_dict[prefix + name][rows]

    def storage_order(module, state_dict, prefix, *args):
        for name in names:
            if prefix + name in state_dict:
                state_dict[prefix + name] = state_dict[prefix + name][source.to(state_dict[prefix + name].device)]

    model.register_state_dict_post_hook(checkpoint_order)
    model.register_load_state_dict_pre_hook(storage_order)
